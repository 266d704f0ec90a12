export {
  launchArch,
  launchMarket,
  type PlanOptions,
  planRecovery,
  type RecoveryPlan,
} from "./plan-recovery.js";
