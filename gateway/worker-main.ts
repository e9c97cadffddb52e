/**
 * The old path of the gateway worker's entry point, kept for a supervisor of an earlier release:
 * at an upgrade it forks `worker-main.js` next to its own script from disk, and must find the new
 * worker there. The worker is gateway/upgrade/worker-main.ts.
 */
import './upgrade/worker-main';
