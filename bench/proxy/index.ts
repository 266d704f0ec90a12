export { type ShapingProxy, type ShapingProxyOptions, startShapingProxy } from "./shaping-proxy.js";
export { TokenBucket } from "./token-bucket.js";
