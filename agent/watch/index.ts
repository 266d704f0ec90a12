export { ImdsClient, type ImdsClientOptions } from "./imds-client.js";
export {
  ImdsWatcher,
  type ImdsWatcherEvents,
  type ImdsWatcherOptions,
  parseNotice,
  type RebalanceRecommendation,
  type SpotNotice,
} from "./imds-watcher.js";
export { listenForSignals } from "./signal-listener.js";
