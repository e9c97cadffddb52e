/**
 * Type-checks rendered Kubernetes objects with the TypeScript compiler against the API types of
 * `kubernetes-types` (generated from the Kubernetes OpenAPI spec, v1.30). Each object becomes an
 * object literal annotated with its kind's type, so the compiler reports what a cluster's schema
 * validation would: unknown or misspelt fields at any depth (excess property checks), wrong value
 * types (a number where a Quantity string goes, a string port where an integer goes), missing
 * required fields (a container without a name).
 *
 * Why this and not kubeconform or `helm template --validate`: kubeconform needs the Kubernetes
 * JSON schemas from GitHub and --validate needs a cluster; neither is reachable here or in CI.
 * kubernetes-types is a plain npm package of .d.ts files, and the compiler is already a dev
 * dependency. What it cannot see: formats and enums the types leave as `string`.
 */
import * as path from 'node:path';
import * as ts from 'typescript';
import type { K8sObject } from './manifest';

/** apiVersion/kind -> the type to check against. */
const TYPES: Record<string, string> = {
  'v1/ConfigMap': `import('kubernetes-types/core/v1').ConfigMap`,
  'v1/Secret': `import('kubernetes-types/core/v1').Secret`,
  'v1/Service': `import('kubernetes-types/core/v1').Service`,
  'v1/ServiceAccount': `import('kubernetes-types/core/v1').ServiceAccount`,
  'apps/v1/StatefulSet': `import('kubernetes-types/apps/v1').StatefulSet`,
  'apps/v1/Deployment': `import('kubernetes-types/apps/v1').Deployment`,
  'policy/v1/PodDisruptionBudget': `import('kubernetes-types/policy/v1').PodDisruptionBudget`,
  'autoscaling/v2/HorizontalPodAutoscaler': `import('kubernetes-types/autoscaling/v2').HorizontalPodAutoscaler`,
  'networking.k8s.io/v1/Ingress': `import('kubernetes-types/networking/v1').Ingress`,
  'monitoring.coreos.com/v1/ServiceMonitor': 'ServiceMonitor',
  'cert-manager.io/v1/Certificate': 'Certificate',
};

/**
 * CRDs are not in kubernetes-types: the subsets of the Prometheus Operator's
 * monitoring.coreos.com/v1 ServiceMonitor and cert-manager's cert-manager.io/v1 Certificate this
 * chart may render, with the field names, types and enums their CRDs define (cert-manager's
 * KeyUsage, PrivateKeyAlgorithm, RotationPolicy, ObjectReference).
 */
const PRELUDE = `
type ObjectMeta = import('kubernetes-types/meta/v1').ObjectMeta;
type LabelSelector = import('kubernetes-types/meta/v1').LabelSelector;
interface ServiceMonitorEndpoint {
  port?: string; targetPort?: number | string; path?: string; scheme?: 'http' | 'https';
  interval?: string; scrapeTimeout?: string; honorLabels?: boolean;
}
interface ServiceMonitor {
  apiVersion: 'monitoring.coreos.com/v1'; kind: 'ServiceMonitor'; metadata: ObjectMeta;
  spec: {
    selector: LabelSelector; endpoints: ServiceMonitorEndpoint[];
    namespaceSelector?: { any?: boolean; matchNames?: string[] }; jobLabel?: string;
  };
}
type KeyUsage = 'signing' | 'digital signature' | 'content commitment' | 'key encipherment' | 'key agreement'
  | 'data encipherment' | 'cert sign' | 'crl sign' | 'encipher only' | 'decipher only' | 'any' | 'server auth'
  | 'client auth' | 'code signing' | 'email protection' | 's/mime' | 'ipsec end system' | 'ipsec tunnel'
  | 'ipsec user' | 'timestamping' | 'ocsp signing' | 'microsoft sgc' | 'netscape sgc';
interface Certificate {
  apiVersion: 'cert-manager.io/v1'; kind: 'Certificate'; metadata: ObjectMeta;
  spec: {
    secretName: string; issuerRef: { name: string; kind?: string; group?: string };
    commonName?: string; dnsNames?: string[]; ipAddresses?: string[]; uris?: string[]; emailAddresses?: string[];
    duration?: string; renewBefore?: string; usages?: KeyUsage[]; isCA?: boolean;
    privateKey?: { algorithm?: 'RSA' | 'ECDSA' | 'Ed25519'; size?: number; encoding?: 'PKCS1' | 'PKCS8'; rotationPolicy?: 'Never' | 'Always' };
    secretTemplate?: { annotations?: Record<string, string>; labels?: Record<string, string> };
  };
}
`;

export interface TypeProblem {
  /** "<label>: Kind/name" of the object. */
  object: string;
  message: string;
}

/**
 * Checks every object of every labelled set in one compiler run (one program is far cheaper
 * than one per render). Returns the problems; an empty list means all objects type-check.
 */
export function typecheckObjects(sets: ReadonlyArray<{ label: string; objects: readonly K8sObject[] }>, repoRoot: string): TypeProblem[] {
  const lines: string[] = [PRELUDE];
  let lineCount = PRELUDE.split('\n').length;
  const owners: Array<{ firstLine: number; object: string }> = [];
  const problems: TypeProblem[] = [];
  let n = 0;
  for (const { label, objects } of sets) {
    for (const o of objects) {
      const id = `${label}: ${o.kind}/${o.metadata.name}`;
      const type = TYPES[`${o.apiVersion}/${o.kind}`];
      if (!type) {
        problems.push({ object: id, message: `no type known for ${o.apiVersion} ${o.kind}; add it to k8s/test/typecheck.ts` });
        continue;
      }
      const decl = `export const o${n++}: ${type} = ${JSON.stringify(o, null, 1)};`;
      owners.push({ firstLine: lineCount + 1, object: id });
      lines.push(decl);
      lineCount += decl.split('\n').length;
    }
  }
  // The virtual file sits in the repository so 'kubernetes-types/...' resolves from node_modules.
  const fileName = path.join(repoRoot, 'k8s', 'test', '__rendered_objects__.ts');
  const text = lines.join('\n');
  const options: ts.CompilerOptions = {
    strict: true, noEmit: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10, types: [], skipLibCheck: true, lib: ['lib.es2022.d.ts'],
  };
  const host = ts.createCompilerHost(options);
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.ES2022, true);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, onError, create) => (path.resolve(name) === fileName ? source : getSourceFile(name, lang, onError, create));
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => path.resolve(name) === fileName || fileExists(name);
  const program = ts.createProgram([fileName], options, host);

  for (const d of ts.getPreEmitDiagnostics(program)) {
    const message = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    if (!d.file || d.start === undefined || path.resolve(d.file.fileName) !== fileName) {
      problems.push({ object: '(compiler)', message });
      continue;
    }
    const line = d.file.getLineAndCharacterOfPosition(d.start).line + 1;
    let owner = '(prelude)';
    for (const o of owners) if (o.firstLine <= line) owner = o.object;
    const at = d.file.text.split('\n')[line - 1]?.trim().slice(0, 120);
    problems.push({ object: owner, message: `${message} (at: ${at})` });
  }
  return problems;
}
