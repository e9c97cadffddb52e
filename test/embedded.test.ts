/** The end-to-end suites against the embedded system (one process, SQLite, in-process bus). */
import { embeddedMode, withWebSocket } from './harness';
import { badInputSuite } from './suites/bad-input';
import { deviceLoginSuite } from './suites/device-login';
import { messagingSuite } from './suites/messaging';
import { newOpSuite } from './suites/new-op';
import { requestIntegritySuite } from './suites/request-integrity';
import { restartSuite } from './suites/restart';

messagingSuite(embeddedMode);
badInputSuite(embeddedMode);
deviceLoginSuite(embeddedMode);
newOpSuite(embeddedMode);
requestIntegritySuite(embeddedMode);
restartSuite(embeddedMode);

// The same clients over the gateway's WebSocket listener.
const embeddedWs = withWebSocket(embeddedMode);
messagingSuite(embeddedWs);
deviceLoginSuite(embeddedWs);
newOpSuite(embeddedWs);
requestIntegritySuite(embeddedWs);
