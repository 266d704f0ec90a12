export { type ControlClientOptions, requestCheckpoint, sendControlRequest } from "./control-client.js";
export { type ControlHandler, ControlServer, type ControlServerOptions } from "./control-server.js";
export { agentSocketPath, agentsDir, checkTaskId } from "./socket-path.js";
