/**
 * The gateway's TLS certificate: common/tls-context.ts with the gateway's setting names
 * (IM_GATEWAY_TLS_CERT / _KEY) as the default in error messages.
 */
import * as common from '../common/tls-context';

export { DEFAULT_TLS_RELOAD_MS, TLS_MIN_VERSION, type LoadedTls } from '../common/tls-context';

/** The files; the settings that named them default to IM_GATEWAY_TLS_CERT / _KEY. */
export type TlsFiles = Omit<common.TlsFiles, 'certSetting' | 'keySetting'> & Partial<Pick<common.TlsFiles, 'certSetting' | 'keySetting'>>;

function named(f: TlsFiles): common.TlsFiles {
  return { ...f, certSetting: f.certSetting ?? 'IM_GATEWAY_TLS_CERT', keySetting: f.keySetting ?? 'IM_GATEWAY_TLS_KEY' };
}

/** Reads and checks both files; ConfigError naming the setting at fault. */
export function loadTlsFiles(f: TlsFiles): common.LoadedTls {
  return common.loadTlsFiles(named(f));
}

export class ReloadableTlsContext extends common.ReloadableTlsContext {
  constructor(files: TlsFiles, opts: ConstructorParameters<typeof common.ReloadableTlsContext>[1] = {}) {
    super(named(files), opts);
  }
}
