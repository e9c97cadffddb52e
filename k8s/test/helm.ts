/**
 * Runs the real helm binary on the chart in k8s/im. Where helm comes from: $HELM_BIN, else
 * k8s/.bin/helm (what k8s/get-helm.sh installs), else `helm` on PATH. Without one the chart
 * suite skips loudly, or fails under IM_REQUIRE_INFRA=1 (CI), like the NATS and Cassandra suites.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REQUIRE_INFRA } from '../../test/infra';
import { Manifest } from './manifest';

/** The repository root, seen from dist/k8s/test. */
export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
export const CHART_DIR = path.join(REPO_ROOT, 'k8s', 'im');
export const HA_VALUES = path.join(CHART_DIR, 'values-ha.yaml');
/** Rendered for the Kubernetes version whose types (kubernetes-types) the objects are checked against. */
export const KUBE_VERSION = '1.30.0';
export const DEFAULT_RELEASE = 'prod';
export const DEFAULT_NAMESPACE = 'chat';

/** Keeps helm's cache/config/data out of the user's home; removed at process exit. */
const helmHome = fs.mkdtempSync(path.join(os.tmpdir(), 'im-chart-helm-'));
process.once('exit', () => fs.rmSync(helmHome, { recursive: true, force: true }));
const HELM_ENV = {
  ...process.env,
  HELM_CACHE_HOME: path.join(helmHome, 'cache'),
  HELM_CONFIG_HOME: path.join(helmHome, 'config'),
  HELM_DATA_HOME: path.join(helmHome, 'data'),
};

function works(bin: string): boolean {
  const r = spawnSync(bin, ['version', '--short'], { encoding: 'utf8', timeout: 30_000 });
  return r.status === 0;
}

let found: string | null | undefined;

/** The helm binary to use, or undefined when there is none. */
export function findHelm(): string | undefined {
  if (found !== undefined) return found ?? undefined;
  const candidates = [process.env.HELM_BIN, path.join(REPO_ROOT, 'k8s', '.bin', 'helm'), 'helm'].filter((c): c is string => !!c);
  found = candidates.find(works) ?? null;
  return found ?? undefined;
}

/** Call in a suite's before(): skips loudly without helm, fails instead under IM_REQUIRE_INFRA=1. */
export function needsHelm(ctx: Mocha.Context): string {
  const bin = findHelm();
  if (bin) return bin;
  const how = 'install it with `k8s/get-helm.sh` (needs Go), or set HELM_BIN';
  if (REQUIRE_INFRA) throw new Error(`helm is required (IM_REQUIRE_INFRA=1) but was not found: ${how}`);
  process.stdout.write(`\n  !!! skipped: ${ctx.test?.parent?.fullTitle() ?? 'chart'} — no helm binary (${how}; IM_REQUIRE_INFRA=1 makes this a failure)\n\n`);
  ctx.skip();
}

export interface HelmResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function runHelm(args: readonly string[]): HelmResult {
  const bin = findHelm();
  if (!bin) throw new Error('helm not found (call needsHelm first)');
  const r = spawnSync(bin, args, { encoding: 'utf8', env: HELM_ENV, timeout: 60_000, maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export interface RenderOptions {
  release?: string;
  namespace?: string;
  /** Values files, in order. */
  valuesFiles?: readonly string[];
  /** --set key=value pairs. */
  set?: Readonly<Record<string, string | number | boolean>>;
}

export function templateArgs(o: RenderOptions): string[] {
  const args = ['template', o.release ?? DEFAULT_RELEASE, CHART_DIR, '--namespace', o.namespace ?? DEFAULT_NAMESPACE, '--kube-version', KUBE_VERSION];
  for (const f of o.valuesFiles ?? []) args.push('-f', f);
  for (const [k, v] of Object.entries(o.set ?? {})) args.push('--set', `${k}=${v}`);
  return args;
}

/** `helm template`, parsed; throws with helm's stderr when rendering fails. */
export function render(o: RenderOptions = {}): Manifest {
  const r = runHelm(templateArgs(o));
  if (r.status !== 0) throw new Error(`helm template failed (${r.status}): ${r.stderr.trim()}`);
  return Manifest.parse(r.stdout, o.release ?? DEFAULT_RELEASE);
}

/** `helm template` that is expected to fail: returns its error output. */
export function renderError(o: RenderOptions = {}): string {
  const r = runHelm(templateArgs(o));
  if (r.status === 0) throw new Error(`helm template succeeded but was expected to fail (${JSON.stringify(o)})`);
  return r.stderr;
}
