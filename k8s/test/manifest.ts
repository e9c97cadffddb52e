/**
 * A rendered chart as typed Kubernetes objects (kubernetes-types), with the look-ups the chart
 * tests need. Parsing only: whether each object really has its kind's shape is typecheck.ts's job.
 */
import type { Container, ConfigMap, PodSpec, PodTemplateSpec, Service } from 'kubernetes-types/core/v1';
import type { Deployment, StatefulSet } from 'kubernetes-types/apps/v1';
import { parseAllDocuments } from 'yaml';

/** What every rendered document has; the rest depends on its kind. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

export type Workload = (StatefulSet & { kind: 'StatefulSet' }) | (Deployment & { kind: 'Deployment' });

export class Manifest {
  private constructor(readonly release: string, readonly objects: readonly K8sObject[]) {}

  static parse(yamlText: string, release: string): Manifest {
    const objects: K8sObject[] = [];
    for (const doc of parseAllDocuments(yamlText)) {
      if (doc.errors.length > 0) throw new Error(`rendered YAML does not parse: ${doc.errors[0].message}`);
      const value = doc.toJS() as unknown;
      if (value === null || value === undefined) continue; // an empty document (a template that rendered nothing)
      const o = value as Partial<K8sObject>;
      if (typeof o.apiVersion !== 'string' || typeof o.kind !== 'string' || typeof o.metadata?.name !== 'string') {
        throw new Error(`rendered document without apiVersion/kind/metadata.name: ${JSON.stringify(value).slice(0, 200)}`);
      }
      objects.push(o as K8sObject);
    }
    return new Manifest(release, objects);
  }

  all<T = K8sObject>(kind: string): T[] {
    return this.objects.filter((o) => o.kind === kind) as unknown as T[];
  }

  find<T = K8sObject>(kind: string, name: string): T | undefined {
    return this.objects.find((o) => o.kind === kind && o.metadata.name === name) as unknown as T | undefined;
  }

  get<T = K8sObject>(kind: string, name: string): T {
    const o = this.find<T>(kind, name);
    if (!o) throw new Error(`no ${kind} "${name}" in the render (have: ${this.objects.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')})`);
    return o;
  }

  workloads(): Workload[] {
    return this.objects.filter((o) => o.kind === 'StatefulSet' || o.kind === 'Deployment') as unknown as Workload[];
  }

  /** The workload of a component, found by its app.kubernetes.io/component label. */
  workload(component: 'gateway' | 'logic' | 'router'): Workload {
    const found = this.workloads().filter((x) => x.metadata?.labels?.['app.kubernetes.io/component'] === component);
    if (found.length !== 1) throw new Error(`${found.length} workloads for ${component}`);
    return found[0];
  }

  /** The component's object name ("<fullname>-<component>"), which its Services, PDB and HPA share. */
  name(component: 'gateway' | 'logic' | 'router'): string {
    return this.workload(component).metadata!.name!;
  }

  configMap(name: string): Record<string, string> {
    return this.get<ConfigMap>('ConfigMap', name).data ?? {};
  }

  services(): Service[] {
    return this.all<Service>('Service');
  }
}

export function template(w: Workload): PodTemplateSpec {
  if (!w.spec?.template) throw new Error(`${w.kind} ${w.metadata?.name} has no pod template`);
  return w.spec.template;
}

export function podSpec(w: Workload): PodSpec {
  const spec = template(w).spec;
  if (!spec) throw new Error(`${w.kind} ${w.metadata?.name} has no pod spec`);
  return spec;
}

export function mainContainer(w: Workload): Container {
  const c = podSpec(w).containers[0];
  if (!c) throw new Error(`${w.kind} ${w.metadata?.name} has no container`);
  return c;
}

/**
 * The container's environment as the process will see it: envFrom ConfigMaps first, then env
 * (which wins), with $(VAR) references expanded the way the kubelet does (only variables defined
 * earlier). Values from the downward API or Secrets show as "<fieldRef:path>" / "<secret:name/key>".
 */
export function effectiveEnv(m: Manifest, c: Container): Map<string, string> {
  const env = new Map<string, string>();
  for (const src of c.envFrom ?? []) {
    if (src.configMapRef) for (const [k, v] of Object.entries(m.configMap(src.configMapRef.name!))) env.set(k, v);
  }
  for (const e of c.env ?? []) {
    if (e.value !== undefined) {
      env.set(e.name, e.value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, v: string) => env.get(v) ?? whole));
    } else if (e.valueFrom?.fieldRef) {
      env.set(e.name, `<fieldRef:${e.valueFrom.fieldRef.fieldPath}>`);
    } else if (e.valueFrom?.secretKeyRef) {
      env.set(e.name, `<secret:${e.valueFrom.secretKeyRef.name}/${e.valueFrom.secretKeyRef.key}>`);
    } else {
      env.set(e.name, '<unknown source>');
    }
  }
  return env;
}

/** "30s", "500ms", "2m" -> seconds (the services' duration syntax, common/config.ts). */
export function durationSeconds(v: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(v.trim());
  if (!m) throw new Error(`not a duration: "${v}"`);
  const n = Number(m[1]);
  const unit = m[2] ?? 'ms';
  const factor = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }[unit]!;
  return n * factor;
}

/** Labels a selector needs, all present on the given labels. */
export function selects(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (!selector || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}
