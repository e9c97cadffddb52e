/**
 * The old path of the gateway supervisor's entry point, kept so that commands and units written
 * for earlier releases still start it: the supervisor is gateway/upgrade/supervisor-main.ts.
 */
import './upgrade/supervisor-main';
