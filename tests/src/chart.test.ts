// The Helm chart (charts/concord), checked with the real helm (.tools/bin/helm, from
// `bash scripts/install-tools.sh helm`): `helm lint --strict` and `helm template` over the default
// values and every charts/concord/ci/*-values.yaml, each rendered object validated against the
// Kubernetes schema (kubernetes-models), then the structure that makes the cluster work: one
// StatefulSet per consensus group with the replicas the values ask for, --peers naming exactly the
// pods' DNS names, --advertise and --groups agreeing with them, probes, PodDisruptionBudgets at a
// majority, anti-affinity, tracing and TLS wiring, a small profile within 2 GiB. Beyond rendering:
// `concord serve <role>` runs with the rendered flags and answers what the probes ask, NOTES.txt's
// commands run against a real cluster, and bad values fail with a message naming them.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { freePorts, startLocalCluster } from './harness/cluster.js';
import { describeResult, runCommand, type CommandResult } from './harness/command.js';
import { childEnv, nodeBinary, repoRoot } from './harness/paths.js';
import { track } from './harness/reaper.js';

const HELM = join(repoRoot, '.tools', 'bin', 'helm');
const GRPCURL = join(repoRoot, '.tools', 'bin', 'grpcurl');
const CHART = join(repoRoot, 'charts', 'concord');
const CI_DIR = join(CHART, 'ci');
const RELEASE = 'demo';
const NAMESPACE = 'concord-test';
const GIB = 1024 ** 3;
/** What the image's entrypoint runs (deploy/Dockerfile: tini -- concord serve). */
const CONCORD_CLI = join(repoRoot, 'packages', 'cli', 'bin', 'concord.js');

// --- Rendering ----------------------------------------------------------------------------------

/** A rendered Kubernetes object, as far as these checks read it. */
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: unknown;
  data?: Record<string, string>;
  type?: string;
}

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string } };
}

interface Probe {
  grpc?: { port: number; service?: string };
  tcpSocket?: { port: number | string };
  httpGet?: { port: number | string; path?: string };
  exec?: { command: string[] };
}

interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  ports?: { name?: string; containerPort: number }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  resources?: { requests?: Record<string, string | number>; limits?: Record<string, string | number> };
  securityContext?: { readOnlyRootFilesystem?: boolean; runAsNonRoot?: boolean; allowPrivilegeEscalation?: boolean };
  volumeMounts?: { name: string; mountPath: string }[];
}

interface Volume {
  name: string;
  emptyDir?: object;
  secret?: { secretName: string; items?: { key: string; path: string }[] };
}

interface PodSpec {
  containers: Container[];
  volumes?: Volume[];
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; fsGroup?: number };
  affinity?: { podAntiAffinity?: PodAntiAffinity };
}

interface PodAntiAffinity {
  preferredDuringSchedulingIgnoredDuringExecution?: { weight: number; podAffinityTerm: AffinityTerm }[];
  requiredDuringSchedulingIgnoredDuringExecution?: AffinityTerm[];
}

interface AffinityTerm {
  topologyKey: string;
  labelSelector?: { matchLabels?: Record<string, string> };
}

interface StatefulSetSpec {
  replicas: number;
  serviceName: string;
  podManagementPolicy?: string;
  selector: { matchLabels: Record<string, string> };
  template: { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec };
  volumeClaimTemplates: { metadata: { name: string }; spec: { resources: { requests: { storage: string } }; storageClassName?: string } }[];
}

interface ServiceSpec {
  clusterIP?: string;
  publishNotReadyAddresses?: boolean;
  selector: Record<string, string>;
  ports: { name: string; port: number; targetPort: string | number }[];
}

/** The chart's values after merging a profile over values.yaml, as far as these checks read them. */
interface Values {
  fullnameOverride: string;
  clusterDomain: string;
  antiAffinity: 'soft' | 'hard' | 'none';
  image: { repository: string; tag: string };
  coordinator: { replicas: number; port: number; service: { port: number }; storage: { size: string } };
  shards: { groups: number | string[]; replicas: number; port: number; storage: { size: string } };
  ring: { vnodes: number; epoch: number };
  tls: { enabled: boolean; existingSecret: string };
  tracing: { enabled: boolean; otlpEndpoint: string; protocol: string };
  metrics: { enabled: boolean; port: number; podAnnotations: boolean; serviceMonitor: { enabled: boolean } };
  networkPolicy: { enabled: boolean; allowExternal: boolean };
  jaeger: { enabled: boolean };
}

interface Rendered {
  objects: K8sObject[];
  values: Values;
  label: string;
}

async function helm(args: readonly string[]): Promise<CommandResult> {
  // Every check needs the real helm: without it each test fails, saying how to get it.
  if (!existsSync(HELM)) throw new Error('helm is not installed in .tools/bin: run `bash scripts/install-tools.sh helm` (it builds helm with go install)');
  return runCommand(HELM, args, { timeoutMs: 60_000 });
}

function valuesArgs(valuesFiles: readonly string[], sets: readonly string[]): string[] {
  return [...valuesFiles.flatMap((file) => ['-f', file]), ...sets];
}

/** Values as helm merges them: maps merge key by key, anything else replaces. */
function mergeValues(base: unknown, override: unknown): unknown {
  if (isMap(base) && isMap(override)) {
    const merged: Record<string, unknown> = { ...base };
    for (const [key, value] of Object.entries(override)) merged[key] = key in base ? mergeValues(base[key], value) : value;
    return merged;
  }
  return override;
}

function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function effectiveValues(valuesFiles: readonly string[], extra: Record<string, unknown> = {}): Values {
  let values: unknown = parseYaml(readFileSync(join(CHART, 'values.yaml'), 'utf8'));
  for (const file of valuesFiles) values = mergeValues(values, parseYaml(readFileSync(file, 'utf8')));
  return mergeValues(values, extra) as Values;
}

/** `helm template` of the chart, parsed into objects; fails the test with helm's output when it fails. */
async function render(label: string, valuesFiles: readonly string[], sets: readonly string[] = [], extra: Record<string, unknown> = {}): Promise<Rendered> {
  const result = await helm(['template', RELEASE, CHART, '--namespace', NAMESPACE, ...valuesArgs(valuesFiles, sets)]);
  assert.equal(result.code, 0, `helm template (${label}) ${describeResult(result)}`);
  const objects: K8sObject[] = [];
  for (const document of parseAllDocuments(result.stdout)) {
    assert.deepEqual(document.errors, [], `helm template (${label}) produced YAML that does not parse`);
    const object: unknown = document.toJS();
    if (object === null || object === undefined) continue;
    objects.push(object as K8sObject);
  }
  assert.ok(objects.length > 0, `helm template (${label}) rendered nothing`);
  return { objects, values: effectiveValues(valuesFiles, extra), label };
}

// --- Reading rendered objects -----------------------------------------------------------------------

function fullname(values: Values): string {
  return values.fullnameOverride !== '' ? values.fullnameOverride : `${RELEASE}-concord`;
}

function groupIds(values: Values): string[] {
  const { groups } = values.shards;
  return typeof groups === 'number' ? Array.from({ length: groups }, (_, i) => `g${i + 1}`) : groups;
}

function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

function ofKind(rendered: Rendered, kind: string): K8sObject[] {
  return rendered.objects.filter((object) => object.kind === kind);
}

function named(rendered: Rendered, kind: string, name: string): K8sObject {
  const found = ofKind(rendered, kind).filter((object) => object.metadata.name === name);
  assert.equal(found.length, 1, `${rendered.label}: expected one ${kind} named ${name}, found ${found.length} (${kind}s: ${ofKind(rendered, kind).map((o) => o.metadata.name).join(', ') || 'none'})`);
  return found[0]!;
}

function statefulSetSpec(object: K8sObject): StatefulSetSpec {
  return object.spec as StatefulSetSpec;
}

/** The single container of a pod spec with this name. */
function container(spec: PodSpec, name: string): Container {
  const found = spec.containers.find((c) => c.name === name);
  assert.ok(found, `no container ${name} (containers: ${spec.containers.map((c) => c.name).join(', ')})`);
  return found;
}

/** `--flag=value` arguments as a map; every flag of a Concord role appears at most once. */
function flags(args: readonly string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (const arg of args) {
    if (!arg.startsWith('--')) continue;
    const equals = arg.indexOf('=');
    assert.notEqual(equals, -1, `argument ${arg} should be written --flag=value`);
    const name = arg.slice(2, equals);
    assert.ok(!map.has(name), `--${name} is given twice in ${args.join(' ')}`);
    map.set(name, arg.slice(equals + 1));
  }
  return map;
}

function flag(args: readonly string[], name: string): string {
  const value = flags(args).get(name);
  assert.ok(value !== undefined, `--${name} missing from ${args.join(' ')}`);
  return value;
}

function env(c: Container, name: string): string | undefined {
  return c.env?.find((variable) => variable.name === name)?.value;
}

/** The DNS name of pod <statefulSet>-<ordinal> behind its headless Service. */
function podAddress(values: Values, statefulSet: string, service: string, ordinal: number, port: number): string {
  return `${statefulSet}-${ordinal}.${service}.${NAMESPACE}.svc.${values.clusterDomain}:${port}`;
}

/** Bytes of a Kubernetes memory quantity (the forms the chart's values use). */
function memoryBytes(quantity: string | number): number {
  if (typeof quantity === 'number') return quantity;
  const match = /^([0-9.]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(quantity);
  assert.ok(match, `unexpected memory quantity ${quantity}`);
  const units: Record<string, number> = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return Number(match[1]) * (match[2] === undefined ? 1 : units[match[2]]!);
}

// --- Validation ---------------------------------------------------------------------------------

/** Every kind the chart may render, with the model that validates it against the Kubernetes schema. */
const MODELS: Record<string, (object: K8sObject) => { validate(): void }> = {
  'apps/v1/StatefulSet': (object) => new StatefulSet(object as never),
  'apps/v1/Deployment': (object) => new Deployment(object as never),
  'v1/Service': (object) => new Service(object as never),
  'v1/Secret': (object) => new Secret(object as never),
  'v1/Pod': (object) => new Pod(object as never),
  'policy/v1/PodDisruptionBudget': (object) => new PodDisruptionBudget(object as never),
  'networking.k8s.io/v1/NetworkPolicy': (object) => new NetworkPolicy(object as never),
};

/**
 * Kinds from CRDs, which kubernetes-models does not know: validated here by hand, field by field.
 * Only these may appear besides MODELS.
 */
const CUSTOM_KINDS: Record<string, (object: K8sObject, rendered: Rendered) => void> = {
  'monitoring.coreos.com/v1/ServiceMonitor': checkServiceMonitorShape,
};

function validateAll(rendered: Rendered): void {
  for (const object of rendered.objects) {
    const key = `${object.apiVersion}/${object.kind}`;
    const where = `${rendered.label}: ${object.kind} ${object.metadata?.name}`;
    const model = MODELS[key];
    const custom = CUSTOM_KINDS[key];
    assert.ok(model !== undefined || custom !== undefined, `${where}: ${key} is neither a known Kubernetes kind nor an allowed custom kind`);
    if (model !== undefined) {
      try {
        model(object).validate();
      } catch (error) {
        assert.fail(`${where} does not validate against the Kubernetes schema: ${error instanceof Error ? error.message : String(error)}`);
      }
    } else {
      custom!(object, rendered);
    }
    assert.equal(object.metadata.namespace, NAMESPACE, `${where}: namespace`);
    assert.match(object.metadata.name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, `${where}: name is not a DNS label`);
    assert.ok(object.metadata.name.length <= 63, `${where}: name longer than 63 characters`);
    const labels = object.metadata.labels ?? {};
    for (const label of ['app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/managed-by', 'app.kubernetes.io/part-of', 'helm.sh/chart']) {
      assert.ok(labels[label], `${where}: label ${label} missing`);
    }
    assert.equal(labels['app.kubernetes.io/instance'], RELEASE, `${where}: instance label`);
  }
  const seen = new Set<string>();
  for (const object of rendered.objects) {
    const key = `${object.kind}/${object.metadata.name}`;
    assert.ok(!seen.has(key), `${rendered.label}: ${key} rendered twice`);
    seen.add(key);
  }
}

function checkServiceMonitorShape(object: K8sObject, rendered: Rendered): void {
  const spec = object.spec as {
    selector?: { matchLabels?: Record<string, string> };
    namespaceSelector?: { matchNames?: string[] };
    endpoints?: { port?: string; path?: string; scheme?: string; interval?: string; scrapeTimeout?: string }[];
  };
  const where = `${rendered.label}: ServiceMonitor ${object.metadata.name}`;
  assert.deepEqual(Object.keys(object).sort(), ['apiVersion', 'kind', 'metadata', 'spec'], `${where}: top-level fields`);
  assert.deepEqual(Object.keys(spec).sort(), ['endpoints', 'namespaceSelector', 'selector'], `${where}: spec fields`);
  assert.deepEqual(spec.namespaceSelector, { matchNames: [NAMESPACE] }, `${where}: namespaceSelector`);
  assert.ok(spec.endpoints !== undefined && spec.endpoints.length === 1, `${where}: one endpoint`);
  const endpoint = spec.endpoints[0]!;
  for (const key of Object.keys(endpoint)) assert.ok(['port', 'path', 'scheme', 'interval', 'scrapeTimeout'].includes(key), `${where}: unknown endpoint field ${key}`);
  assert.equal(endpoint.port, 'metrics');
  assert.equal(endpoint.path, '/metrics');
  assert.equal(endpoint.scheme, 'http');
  for (const duration of [endpoint.interval, endpoint.scrapeTimeout]) assert.match(String(duration), /^[0-9]+(ms|s|m|h)$/, `${where}: duration`);
  // It must select exactly the headless Services, each of which has a port named metrics.
  const selector = spec.selector?.matchLabels ?? {};
  const selected = ofKind(rendered, 'Service').filter((service) => Object.entries(selector).every(([k, v]) => service.metadata.labels?.[k] === v));
  const expected = 1 + groupIds(rendered.values).length;
  assert.equal(selected.length, expected, `${where}: selects ${selected.map((s) => s.metadata.name).join(', ')}; expected the ${expected} headless Services`);
  for (const service of selected) {
    const serviceSpec = service.spec as ServiceSpec;
    assert.equal(serviceSpec.clusterIP, 'None', `${where}: selects ${service.metadata.name}, which is not headless`);
    assert.ok(serviceSpec.ports.some((port) => port.name === 'metrics'), `${where}: ${service.metadata.name} has no metrics port`);
  }
}

// --- The structure that makes the cluster work ------------------------------------------------------

interface ConsensusGroup {
  statefulSet: string;
  service: string;
  component: 'coordinator' | 'shard';
  group: string;
  replicas: number;
  port: number;
  storage: string;
}

function consensusGroups(values: Values): ConsensusGroup[] {
  const prefix = fullname(values);
  return [
    {
      statefulSet: `${prefix}-coordinator`,
      service: `${prefix}-coordinator-peers`,
      component: 'coordinator',
      group: 'meta',
      replicas: values.coordinator.replicas,
      port: values.coordinator.port,
      storage: values.coordinator.storage.size,
    },
    ...groupIds(values).map((group): ConsensusGroup => ({
      statefulSet: `${prefix}-shard-${group}`,
      service: `${prefix}-shard-${group}`,
      component: 'shard',
      group,
      replicas: values.shards.replicas,
      port: values.shards.port,
      storage: values.shards.storage.size,
    })),
  ];
}

function checkRelease(rendered: Rendered): void {
  validateAll(rendered);
  const { values, label } = rendered;
  const groups = consensusGroups(values);
  const prefix = fullname(values);

  // No roles that do not exist yet (workers, participant-redis): only these components.
  for (const object of rendered.objects) {
    const component = object.metadata.labels?.['app.kubernetes.io/component'];
    if (component !== undefined) assert.ok(['coordinator', 'shard', 'jaeger', 'test'].includes(component), `${label}: unexpected component ${component} on ${object.kind} ${object.metadata.name}`);
  }
  assert.equal(ofKind(rendered, 'StatefulSet').length, groups.length, `${label}: one StatefulSet per consensus group (the meta group and ${groupIds(values).length} shard groups)`);

  const coordinatorGroup = groups[0]!;
  const shardGroups = groups.slice(1);
  const peersOf = new Map<string, string[]>();

  for (const group of groups) {
    const where = `${label}: StatefulSet ${group.statefulSet}`;
    const sts = statefulSetSpec(named(rendered, 'StatefulSet', group.statefulSet));
    assert.equal(sts.replicas, group.replicas, `${where}: replicas`);
    assert.equal(sts.podManagementPolicy, 'Parallel', `${where}: podManagementPolicy`);
    const selector = sts.selector.matchLabels;
    assert.equal(selector['app.kubernetes.io/component'], group.component, `${where}: selector component`);
    assert.equal(selector['concord.io/group'], group.group, `${where}: selector group`);
    for (const [key, value] of Object.entries(selector)) assert.equal(sts.template.metadata.labels[key], value, `${where}: pod label ${key}`);

    // The headless Service gives each pod its DNS name, also before it is ready.
    assert.equal(sts.serviceName, group.service, `${where}: serviceName`);
    const headless = named(rendered, 'Service', group.service).spec as ServiceSpec;
    assert.equal(headless.clusterIP, 'None', `${where}: its Service must be headless`);
    assert.equal(headless.publishNotReadyAddresses, true, `${where}: Raft peers must find each other before they are ready`);
    assert.deepEqual(headless.selector, selector, `${where}: the headless Service selects exactly this group's pods`);
    const grpcPort = headless.ports.find((port) => port.name === 'grpc');
    assert.equal(grpcPort?.port, group.port, `${where}: headless Service gRPC port`);

    // Storage: one claim per member, mounted where --data-dir points.
    assert.deepEqual(sts.volumeClaimTemplates.map((claim) => claim.metadata.name), ['data'], `${where}: volumeClaimTemplates`);
    assert.equal(sts.volumeClaimTemplates[0]!.spec.resources.requests.storage, group.storage, `${where}: storage size`);

    const pod = sts.template.spec;
    const c = container(pod, group.component);
    const args = c.args ?? [];
    assert.equal(args[0], group.component, `${where}: the first argument is the role (the image runs concord serve <role>)`);
    assert.equal(c.image, `${values.image.repository}:${values.image.tag || '0.1.0'}`, `${where}: image`);
    const dataMount = c.volumeMounts?.find((mount) => mount.name === 'data');
    assert.ok(dataMount, `${where}: data volume not mounted`);
    assert.ok(flag(args, 'data-dir').startsWith(`${dataMount.mountPath}/`), `${where}: --data-dir ${flag(args, 'data-dir')} is not on the data volume (${dataMount.mountPath})`);

    // Identity: the member id is the pod name; --peers lists every pod's DNS name; --advertise is this pod's entry.
    assert.equal(flag(args, 'engine'), 'raft', `${where}: engine`);
    assert.equal(flag(args, 'member-id'), '$(POD_NAME)', `${where}: --member-id`);
    assert.deepEqual(c.env?.find((variable) => variable.name === 'POD_NAME')?.valueFrom, { fieldRef: { fieldPath: 'metadata.name' } }, `${where}: POD_NAME`);
    const expectedPeers = Array.from({ length: group.replicas }, (_, i) => `${group.statefulSet}-${i}=${podAddress(values, group.statefulSet, group.service, i, group.port)}`);
    assert.deepEqual(flag(args, 'peers').split(','), expectedPeers, `${where}: --peers`);
    peersOf.set(group.group, expectedPeers.map((entry) => entry.slice(entry.indexOf('=') + 1)));
    const advertise = flag(args, 'advertise');
    for (let i = 0; i < group.replicas; i++) {
      assert.equal(advertise.replaceAll('$(POD_NAME)', `${group.statefulSet}-${i}`), expectedPeers[i]!.split('=')[1], `${where}: --advertise of pod ${i} is its --peers entry`);
    }
    const listen = flag(args, 'listen');
    assert.ok(listen.endsWith(`:${group.port}`), `${where}: --listen ${listen} uses the gRPC port ${group.port}`);
    assert.equal(c.ports?.find((port) => port.name === 'grpc')?.containerPort, group.port, `${where}: container gRPC port`);
    assert.equal(flag(args, 'ring-vnodes'), String(values.ring.vnodes), `${where}: --ring-vnodes`);
    assert.equal(flag(args, 'ring-epoch'), String(values.ring.epoch), `${where}: --ring-epoch`);

    // Probes: gRPC health, on the role's public service for readiness; with TLS the same question
    // asked by `concord health` in the container (kubelet's gRPC probe has no client certificate).
    const readinessService = group.component === 'coordinator' ? 'concord.v1.KV' : 'concord.v1.Shard';
    for (const [kind, probe] of [['liveness', c.livenessProbe], ['readiness', c.readinessProbe]] as const) {
      assert.ok(probe, `${where}: ${kind} probe missing`);
      if (values.tls.enabled) {
        assert.deepEqual(
          probe.exec?.command,
          ['concord', 'health', '--addr', `localhost:${group.port}`, ...(kind === 'readiness' ? ['--service', readinessService] : [])],
          `${where}: ${kind} probe with TLS runs concord health on localhost (a name the certificate holds)`,
        );
        assert.equal(probe.grpc, undefined);
        assert.equal(probe.tcpSocket, undefined);
      } else {
        assert.equal(probe.grpc?.port, group.port, `${where}: ${kind} gRPC probe port`);
        assert.equal(probe.grpc?.service, kind === 'readiness' ? readinessService : '', `${where}: ${kind} gRPC probe service`);
      }
    }

    // Disruptions leave a majority; members spread over nodes.
    const pdbs = ofKind(rendered, 'PodDisruptionBudget').filter((pdb) => {
      const matchLabels = (pdb.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels;
      return JSON.stringify(matchLabels) === JSON.stringify(selector);
    });
    assert.equal(pdbs.length, 1, `${where}: one PodDisruptionBudget selecting this group`);
    assert.equal((pdbs[0]!.spec as { minAvailable: number }).minAvailable, majority(group.replicas), `${where}: PodDisruptionBudget minAvailable = majority of ${group.replicas}`);
    const antiAffinity = pod.affinity?.podAntiAffinity;
    if (values.antiAffinity === 'none') {
      assert.equal(antiAffinity, undefined, `${where}: antiAffinity none`);
    } else {
      const terms =
        values.antiAffinity === 'soft'
          ? (antiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? []).map((term) => term.podAffinityTerm)
          : (antiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? []);
      assert.equal(terms.length, 1, `${where}: ${values.antiAffinity} pod anti-affinity`);
      assert.equal(terms[0]!.topologyKey, 'kubernetes.io/hostname', `${where}: anti-affinity by hostname`);
      assert.deepEqual(terms[0]!.labelSelector?.matchLabels, selector, `${where}: anti-affinity between the members of this group`);
    }

    // Security: non-root, read-only root filesystem, /tmp writable.
    assert.equal(pod.securityContext?.runAsNonRoot, true, `${where}: runAsNonRoot`);
    assert.equal(pod.securityContext?.runAsUser, 10001, `${where}: runAsUser is the image's concord user (deploy/Dockerfile)`);
    assert.equal(pod.securityContext?.fsGroup, 10001, `${where}: fsGroup makes the data volume writable`);
    assert.equal(c.securityContext?.readOnlyRootFilesystem, true, `${where}: readOnlyRootFilesystem`);
    assert.equal(c.securityContext?.allowPrivilegeEscalation, false, `${where}: allowPrivilegeEscalation`);
    const tmp = c.volumeMounts?.find((mount) => mount.mountPath === '/tmp');
    assert.ok(tmp && pod.volumes?.find((volume) => volume.name === tmp.name)?.emptyDir !== undefined, `${where}: /tmp is an emptyDir`);
    assert.ok(c.resources?.requests?.['memory'] !== undefined && c.resources?.limits?.['memory'] !== undefined, `${where}: memory request and limit`);

    checkMetrics(rendered, where, c, sts);
    checkTracing(rendered, where, c, group.component === 'coordinator' ? 'concord-coordinator' : 'concord-shard');
    checkTls(rendered, where, c, pod);
  }

  // The coordinators' --groups names every shard group with exactly its replicas' addresses; every
  // shard knows every group on the ring.
  const coordinatorArgs = container(statefulSetSpec(named(rendered, 'StatefulSet', coordinatorGroup.statefulSet)).template.spec, 'coordinator').args ?? [];
  const groupsFlag = flag(coordinatorArgs, 'groups').split(',').map((entry) => {
    const [id, addresses] = entry.split('=') as [string, string];
    return [id, addresses.split('|')] as const;
  });
  assert.deepEqual(groupsFlag.map(([id]) => id), groupIds(values), `${label}: coordinator --groups names every shard group`);
  for (const [id, addresses] of groupsFlag) assert.deepEqual(addresses, peersOf.get(id), `${label}: coordinator --groups addresses of ${id} are its replicas' --peers addresses`);
  for (const group of shardGroups) {
    const args = container(statefulSetSpec(named(rendered, 'StatefulSet', group.statefulSet)).template.spec, 'shard').args ?? [];
    assert.equal(flag(args, 'group-id'), group.group, `${label}: ${group.statefulSet} --group-id`);
    assert.deepEqual(flag(args, 'ring-groups').split(','), groupIds(values), `${label}: ${group.statefulSet} --ring-groups`);
  }

  // The client Service: every coordinator behind one gRPC port.
  const client = named(rendered, 'Service', `${prefix}-coordinator`).spec as ServiceSpec;
  assert.notEqual(client.clusterIP, 'None', `${label}: the client Service is not headless`);
  assert.deepEqual(client.selector, statefulSetSpec(named(rendered, 'StatefulSet', coordinatorGroup.statefulSet)).selector.matchLabels, `${label}: the client Service selects the coordinators`);
  assert.deepEqual(client.ports.map((port) => [port.name, port.port, port.targetPort]), [['grpc', values.coordinator.service.port, 'grpc']], `${label}: client Service ports`);

  checkTestPod(rendered);
  checkJaeger(rendered);
  checkNetworkPolicy(rendered);
  assert.equal(ofKind(rendered, 'ServiceMonitor').length, values.metrics.enabled && values.metrics.serviceMonitor.enabled ? 1 : 0, `${label}: ServiceMonitor`);
}

function checkMetrics(rendered: Rendered, where: string, c: Container, sts: StatefulSetSpec): void {
  const { metrics } = rendered.values;
  const listen = flags(c.args ?? []).get('metrics-listen');
  const annotations = sts.template.metadata.annotations ?? {};
  if (!metrics.enabled) {
    assert.equal(listen, undefined, `${where}: metrics off, yet --metrics-listen`);
    assert.equal(annotations['prometheus.io/scrape'], undefined, `${where}: metrics off, yet scrape annotations`);
    return;
  }
  assert.ok(listen?.endsWith(`:${metrics.port}`), `${where}: --metrics-listen ${listen} on port ${metrics.port}`);
  assert.equal(c.ports?.find((port) => port.name === 'metrics')?.containerPort, metrics.port, `${where}: metrics container port`);
  if (metrics.podAnnotations) {
    assert.deepEqual(
      [annotations['prometheus.io/scrape'], annotations['prometheus.io/port'], annotations['prometheus.io/path']],
      ['true', String(metrics.port), '/metrics'],
      `${where}: Prometheus scrape annotations`,
    );
  }
}

function checkTracing(rendered: Rendered, where: string, c: Container, serviceName: string): void {
  const { tracing, jaeger } = rendered.values;
  const endpoint = env(c, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  if (!tracing.enabled && !jaeger.enabled) {
    for (const variable of c.env ?? []) assert.ok(!variable.name.startsWith('OTEL_'), `${where}: tracing off, yet ${variable.name} (a process starts its SDK on any OTEL_ exporter setting)`);
    return;
  }
  const jaegerService = `${fullname(rendered.values)}-jaeger`;
  const expected =
    tracing.otlpEndpoint !== ''
      ? tracing.otlpEndpoint
      : `http://${jaegerService}.${NAMESPACE}.svc.${rendered.values.clusterDomain}:${tracing.protocol === 'grpc' ? 4317 : 4318}`;
  assert.equal(endpoint, expected, `${where}: OTEL_EXPORTER_OTLP_ENDPOINT`);
  assert.equal(env(c, 'OTEL_EXPORTER_OTLP_PROTOCOL'), tracing.protocol, `${where}: OTEL_EXPORTER_OTLP_PROTOCOL`);
  assert.equal(env(c, 'OTEL_SERVICE_NAME'), serviceName, `${where}: OTEL_SERVICE_NAME`);
  assert.equal(env(c, 'OTEL_TRACES_EXPORTER'), 'otlp', `${where}: OTEL_TRACES_EXPORTER`);
  const attributes = env(c, 'OTEL_RESOURCE_ATTRIBUTES') ?? '';
  assert.match(attributes, /(^|,)k8s\.pod\.name=\$\(POD_NAME\)(,|$)/, `${where}: OTEL_RESOURCE_ATTRIBUTES names the pod`);
  if (tracing.otlpEndpoint === '') {
    // The chart's Jaeger must listen where the endpoint points.
    const service = named(rendered, 'Service', jaegerService).spec as ServiceSpec;
    const port = new URL(expected).port;
    assert.ok(service.ports.some((p) => String(p.port) === port), `${where}: the Jaeger Service has no port ${port}`);
  }
}

function checkTls(rendered: Rendered, where: string, c: Container, pod: PodSpec): void {
  const { tls } = rendered.values;
  const set = flags(c.args ?? []);
  // The files come as CONCORD_TLS_* variables, which `concord serve` and the CLI both read (so
  // `kubectl exec <pod> -- concord status` speaks TLS too), never also as flags.
  for (const name of ['tls-cert', 'tls-key', 'tls-ca']) assert.ok(!set.has(name), `${where}: --${name} as a flag`);
  if (!tls.enabled) {
    for (const name of ['CONCORD_TLS_CERT', 'CONCORD_TLS_KEY', 'CONCORD_TLS_CA']) assert.equal(env(c, name), undefined, `${where}: TLS off, yet ${name}`);
    return;
  }
  const secretName = tls.existingSecret !== '' ? tls.existingSecret : `${fullname(rendered.values)}-tls`;
  const volume = pod.volumes?.find((v) => v.secret?.secretName === secretName);
  assert.ok(volume, `${where}: no volume from Secret ${secretName}`);
  assert.deepEqual(volume.secret?.items?.map((item) => item.key).sort(), ['ca.crt', 'tls.crt', 'tls.key'], `${where}: the TLS volume mounts the certificate, its key and the CA (not the CA's key)`);
  const mount = c.volumeMounts?.find((m) => m.name === volume.name);
  assert.ok(mount, `${where}: TLS volume not mounted`);
  assert.equal(env(c, 'CONCORD_TLS_CERT'), `${mount.mountPath}/tls.crt`, `${where}: CONCORD_TLS_CERT`);
  assert.equal(env(c, 'CONCORD_TLS_KEY'), `${mount.mountPath}/tls.key`, `${where}: CONCORD_TLS_KEY`);
  assert.equal(env(c, 'CONCORD_TLS_CA'), `${mount.mountPath}/ca.crt`, `${where}: CONCORD_TLS_CA`);
}

/** The generated certificate holds every name a member or client dials, and chains to the CA. */
function checkGeneratedCertificate(rendered: Rendered): void {
  const secret = named(rendered, 'Secret', `${fullname(rendered.values)}-tls`);
  assert.equal(secret.type, 'kubernetes.io/tls');
  const data = secret.data ?? {};
  const decode = (key: string): string => Buffer.from(data[key] ?? '', 'base64').toString('utf8');
  const cert = new X509Certificate(decode('tls.crt'));
  const ca = new X509Certificate(decode('ca.crt'));
  assert.ok(cert.checkIssued(ca) && cert.verify(ca.publicKey), 'the certificate is signed by the CA');
  assert.ok(cert.checkPrivateKey(createPrivateKey(decode('tls.key'))), 'tls.key is the certificate\'s key');
  assert.ok(createPrivateKey(decode('ca.key')), 'ca.key holds the CA key (kept to re-sign on upgrades)');
  const names = (cert.subjectAltName ?? '').split(', ').filter((name) => name.startsWith('DNS:')).map((name) => name.slice(4));
  const domain = `${NAMESPACE}.svc.${rendered.values.clusterDomain}`;
  const prefix = fullname(rendered.values);
  for (const group of consensusGroups(rendered.values)) {
    assert.ok(names.includes(`*.${group.service}.${domain}`), `certificate lacks *.${group.service}.${domain} (has ${names.join(', ')})`);
    for (let i = 0; i < group.replicas; i++) {
      const host = podAddress(rendered.values, group.statefulSet, group.service, i, group.port).replace(/:\d+$/, '');
      assert.ok(cert.checkHost(host) !== undefined, `certificate does not cover ${host}`);
    }
  }
  for (const host of [`${prefix}-coordinator`, `${prefix}-coordinator.${domain}`, 'localhost']) assert.ok(cert.checkHost(host) !== undefined, `certificate does not cover ${host}`);
  assert.equal(cert.checkHost(`other.${domain}`), undefined, 'the certificate names this release only');
  assert.equal(cert.checkIP('127.0.0.1'), '127.0.0.1', 'certificate does not cover 127.0.0.1 (a port-forward)');
}

function checkTestPod(rendered: Rendered): void {
  const { values, label } = rendered;
  const pods = ofKind(rendered, 'Pod');
  assert.equal(pods.length, 1, `${label}: one helm test Pod`);
  const pod = pods[0]!;
  assert.equal(pod.metadata.annotations?.['helm.sh/hook'], 'test', `${label}: the test Pod is a helm test hook`);
  const spec = pod.spec as PodSpec & { restartPolicy: string };
  assert.equal(spec.restartPolicy, 'Never', `${label}: test Pod restartPolicy`);
  const c = spec.containers[0]!;
  assert.equal(c.image, `${values.image.repository}:${values.image.tag || '0.1.0'}`, `${label}: the test runs the Concord image`);
  assert.equal(env(c, 'CONCORD_ADDR'), `${fullname(values)}-coordinator.${NAMESPACE}.svc.${values.clusterDomain}:${values.coordinator.service.port}`, `${label}: the test calls the client Service`);
  const script = (c.command ?? []).join('\n');
  for (const command of ['concord kv put', 'concord --routing "$1" kv get --json', 'concord kv scan']) assert.ok(script.includes(command), `${label}: the test script runs ${command}`);
  assert.ok(c.livenessProbe === undefined && c.readinessProbe === undefined, `${label}: a run-to-completion Pod has no probes`);
  if (values.tls.enabled) {
    // The CLI presents the release's certificate, from the same Secret the members mount.
    const tlsMount = c.volumeMounts?.find((mount) => spec.volumes?.find((volume) => volume.name === mount.name)?.secret !== undefined);
    assert.ok(tlsMount, `${label}: the test Pod mounts the TLS Secret`);
    for (const [name, file] of [['CONCORD_TLS_CERT', 'tls.crt'], ['CONCORD_TLS_KEY', 'tls.key'], ['CONCORD_TLS_CA', 'ca.crt']] as const) {
      assert.equal(env(c, name), `${tlsMount.mountPath}/${file}`, `${label}: test Pod ${name}`);
    }
  }
}

function checkJaeger(rendered: Rendered): void {
  const { values, label } = rendered;
  const deployments = ofKind(rendered, 'Deployment');
  if (!values.jaeger.enabled) {
    assert.equal(deployments.length, 0, `${label}: no Jaeger unless jaeger.enabled`);
    return;
  }
  const deployment = named(rendered, 'Deployment', `${fullname(values)}-jaeger`);
  const spec = deployment.spec as { template: { spec: PodSpec } };
  const c = container(spec.template.spec, 'jaeger');
  assert.ok(c.livenessProbe?.httpGet && c.readinessProbe?.httpGet, `${label}: Jaeger probes`);
  const ports = new Map((c.ports ?? []).map((port) => [port.name, port.containerPort]));
  assert.deepEqual([ports.get('otlp-grpc'), ports.get('otlp-http'), ports.get('query')], [4317, 4318, 16686], `${label}: Jaeger ports (OTLP gRPC, OTLP HTTP, UI)`);
  const service = named(rendered, 'Service', `${fullname(values)}-jaeger`).spec as ServiceSpec;
  assert.deepEqual(service.ports.map((port) => port.port).sort(), [16686, 4317, 4318], `${label}: Jaeger Service ports`);
}

function checkNetworkPolicy(rendered: Rendered): void {
  const { values, label } = rendered;
  const policies = ofKind(rendered, 'NetworkPolicy');
  if (!values.networkPolicy.enabled) {
    assert.equal(policies.length, 0, `${label}: no NetworkPolicy unless networkPolicy.enabled`);
    return;
  }
  assert.equal(policies.length, 1, `${label}: one NetworkPolicy`);
  const spec = policies[0]!.spec as {
    podSelector: { matchExpressions: { key: string; values: string[] }[] };
    ingress: { ports: { port: string }[]; from?: { podSelector?: { matchLabels: Record<string, string> } }[] }[];
  };
  assert.deepEqual(spec.podSelector.matchExpressions[0]?.values, ['coordinator', 'shard'], `${label}: the policy covers coordinators and shards`);
  const grpcRule = spec.ingress.find((rule) => rule.ports.some((port) => port.port === 'grpc'));
  assert.ok(grpcRule, `${label}: an ingress rule for the gRPC ports`);
  if (!values.networkPolicy.allowExternal) {
    // The release's own pods (Raft peers, coordinators calling shards, the helm test) stay allowed.
    const selectors = (grpcRule.from ?? []).map((peer) => peer.podSelector?.matchLabels ?? {});
    const testPodLabels = ofKind(rendered, 'Pod')[0]!.metadata.labels ?? {};
    assert.ok(selectors.some((selector) => Object.entries(selector).length > 0 && Object.entries(selector).every(([k, v]) => testPodLabels[k] === v)), `${label}: the helm test Pod may reach the gRPC ports`);
    for (const group of consensusGroups(values)) {
      const podLabels = statefulSetSpec(named(rendered, 'StatefulSet', group.statefulSet)).template.metadata.labels;
      assert.ok(selectors.some((selector) => Object.entries(selector).length > 0 && Object.entries(selector).every(([k, v]) => podLabels[k] === v)), `${label}: ${group.statefulSet}'s pods may reach the gRPC ports`);
    }
  }
}

/** Memory of every pod the release runs (StatefulSet and Deployment replicas, the test Pod). */
function totalMemory(rendered: Rendered): { requests: number; limits: number; unlimited: string[] } {
  let requests = 0;
  let limits = 0;
  const unlimited: string[] = [];
  const add = (owner: string, pod: PodSpec, replicas: number) => {
    for (const c of pod.containers) {
      const limit = c.resources?.limits?.['memory'];
      const request = c.resources?.requests?.['memory'] ?? limit;
      if (limit === undefined) unlimited.push(`${owner}/${c.name}`);
      requests += replicas * (request === undefined ? 0 : memoryBytes(request));
      limits += replicas * (limit === undefined ? 0 : memoryBytes(limit));
    }
  };
  for (const object of rendered.objects) {
    const spec = object.spec as { replicas?: number; template?: { spec: PodSpec } } & PodSpec;
    if (object.kind === 'StatefulSet' || object.kind === 'Deployment') add(object.metadata.name, spec.template!.spec, spec.replicas ?? 1);
    else if (object.kind === 'Pod') add(object.metadata.name, spec, 1);
  }
  return { requests, limits, unlimited };
}

async function expectFailure(args: readonly string[], pattern: RegExp, why: string): Promise<void> {
  const result = await helm(args);
  assert.notEqual(result.code, 0, `${why}: helm ${args.join(' ')} should fail\n${describeResult(result)}`);
  assert.match(result.stderr + result.stdout, pattern, `${why}: helm's message should say what to fix\n${describeResult(result)}`);
}

// --- NOTES.txt ------------------------------------------------------------------------------------

/**
 * NOTES.txt as `helm install` prints it. `helm template` never renders NOTES.txt, so a copy of the
 * chart renders it through `tpl` into a ConfigMap; a template error in it fails here rather than
 * at the end of someone's install.
 */
async function renderNotes(label: string, valuesFiles: readonly string[], sets: readonly string[] = []): Promise<string> {
  const workDir = await mkdtemp(join(tmpdir(), 'concord-chart-notes-'));
  try {
    const chart = join(workDir, 'concord');
    await cp(CHART, chart, { recursive: true });
    await rename(join(chart, 'templates', 'NOTES.txt'), join(chart, 'NOTES.source'));
    await writeFile(
      join(chart, 'templates', 'zz-notes.yaml'),
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |\n    {{- tpl (.Files.Get "NOTES.source") . | nindent 4 }}\n',
    );
    const result = await helm(['template', RELEASE, chart, '--namespace', NAMESPACE, '--show-only', 'templates/zz-notes.yaml', ...valuesArgs(valuesFiles, sets)]);
    assert.equal(result.code, 0, `NOTES.txt (${label}) ${describeResult(result)}`);
    const configMap = parseYaml(result.stdout) as { data: { notes: string } };
    return configMap.data.notes;
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

/** The lines of the notes that run a command (indented, starting with the tool). */
function commandLines(notes: string, tool: string): string[] {
  return notes
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.startsWith(`${tool} `));
}

// --- Running a rendered member ------------------------------------------------------------------

/** grpc.health.v1.HealthCheckRequest {service} and the status of its response, by hand: two fields. */
function encodeHealthRequest(service: string): Buffer {
  const name = Buffer.from(service, 'utf8');
  return name.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, name.length]), name]);
}

function decodeHealthStatus(response: Buffer): number {
  // Field 1 (status), varint: 0x08 <value>; absent means 0 (UNKNOWN).
  return response.length >= 2 && response[0] === 0x08 ? response[1]! : 0;
}

const SERVING = 1;

/** The status grpc.health.v1 gives for `service` (what kubelet's gRPC probe asks). */
function healthStatus(address: string, service: string, credentials: grpc.ChannelCredentials): Promise<number> {
  const client = new grpc.Client(address, credentials);
  return new Promise<number>((resolve, reject) => {
    client.makeUnaryRequest(
      '/grpc.health.v1.Health/Check',
      (request: Buffer) => request,
      (response: Buffer) => response,
      encodeHealthRequest(service),
      { deadline: Date.now() + 5_000 },
      (error, response) => {
        client.close();
        if (error) reject(error);
        else resolve(decodeHealthStatus(response!));
      },
    );
  });
}

/**
 * Runs pod 0 of a rendered StatefulSet as the image would, `concord serve <role> <args>` with the
 * pod's environment, its data dir and TLS files moved to `workDir`, until it logs "serving"; then
 * asks its health service what the liveness and readiness probes ask (over TLS when the release
 * has it) and stops it with SIGTERM, which must end it cleanly.
 */
async function runMember(rendered: Rendered, group: ConsensusGroup, workDir: string, tlsDir: string | undefined): Promise<void> {
  const where = `${rendered.label}: ${group.statefulSet}-0`;
  const pod = `${group.statefulSet}-0`;
  const sts = statefulSetSpec(named(rendered, 'StatefulSet', group.statefulSet));
  const c = container(sts.template.spec, group.component);
  const tlsMount = c.volumeMounts?.find((mount) => mount.name === 'tls')?.mountPath;
  const localize = (text: string): string => {
    let out = text.replaceAll('$(POD_NAME)', pod).replaceAll('$(POD_NAMESPACE)', NAMESPACE);
    if (tlsMount !== undefined && tlsDir !== undefined) out = out.replaceAll(`${tlsMount}/`, `${tlsDir}/`);
    return out;
  };
  const args = (c.args ?? []).map((arg) => (arg.startsWith('--data-dir=') ? `--data-dir=${join(workDir, pod)}` : localize(arg)));
  const env: Record<string, string> = { POD_NAME: pod, POD_NAMESPACE: NAMESPACE };
  for (const variable of c.env ?? []) {
    // No collector runs here: leave tracing off (its wiring is checked on the rendered objects).
    if (variable.value !== undefined && !variable.name.startsWith('OTEL_')) env[variable.name] = localize(variable.value);
  }
  const child = spawn(nodeBinary, [CONCORD_CLI, 'serve', ...args], { cwd: repoRoot, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const serving = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 30_000);
      const onData = (chunk: Buffer) => {
        output += chunk.toString('utf8');
        if (/"msg":"serving"/.test(output)) {
          clearTimeout(timer);
          resolve(true);
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      void exited.then(() => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    assert.ok(serving, `${where}: concord serve ${args.join(' ')} did not start serving:\n${output}`);
    // `concord serve` restarted itself (same pid) with the server's node flags (runtime's node-flags.ts).
    const commandLine = execFileSync('ps', ['-o', 'args=', '-p', String(child.pid)], { encoding: 'utf8' });
    assert.ok(commandLine.includes('--initial-old-space-size=128'), `${where}: runs as ${commandLine}`);
    const port = group.port;
    const credentials =
      tlsDir === undefined
        ? grpc.credentials.createInsecure()
        : grpc.credentials.createSsl(readFileSync(join(tlsDir, 'ca.crt')), readFileSync(join(tlsDir, 'tls.key')), readFileSync(join(tlsDir, 'tls.crt')));
    const readiness = group.component === 'coordinator' ? 'concord.v1.KV' : 'concord.v1.Shard';
    // With TLS, by a name the certificate holds (Node refuses an IP address as TLS server name).
    const address = tlsDir === undefined ? `127.0.0.1:${port}` : `localhost:${port}`;
    for (const service of ['', readiness]) {
      assert.equal(await healthStatus(address, service, credentials), SERVING, `${where}: health of "${service}" (a probe asks it)`);
    }
    // An exec probe runs as rendered, `concord` being this checkout's CLI, with the pod's environment.
    for (const [kind, probe] of [['liveness', c.livenessProbe], ['readiness', c.readinessProbe]] as const) {
      const command = probe?.exec?.command;
      if (command === undefined) continue;
      assert.equal(command[0], 'concord', `${where}: ${kind} exec probe runs the CLI of the image`);
      const result = await runCommand(nodeBinary, [CONCORD_CLI, ...command.slice(1).map(localize)], { env, timeoutMs: 20_000 });
      assert.equal(result.code, 0, `${where}: ${kind} probe ${command.join(' ')} ${describeResult(result)}`);
      assert.equal(result.stdout, 'SERVING\n', `${where}: ${kind} probe output`);
    }
    if (rendered.values.metrics.enabled) {
      const response = await fetch(`http://127.0.0.1:${rendered.values.metrics.port}/metrics`);
      assert.equal(response.status, 200, `${where}: GET /metrics on the annotated port`);
      assert.match(await response.text(), /concord_raft_term\{/, `${where}: Raft metrics`);
    }
  } finally {
    child.kill('SIGTERM');
    const code = await exited;
    assert.equal(code, 0, `${where}: SIGTERM should end it cleanly:\n${output}`);
  }
}

// --- The tests ----------------------------------------------------------------------------------

const ciValues = existsSync(CI_DIR)
  ? readdirSync(CI_DIR)
      .filter((name) => name.endsWith('-values.yaml'))
      .sort()
      .map((name) => join(CI_DIR, name))
  : [];
const profiles: { label: string; files: string[] }[] = [
  { label: 'default values', files: [] },
  ...ciValues.map((file) => ({ label: `ci/${file.slice(CI_DIR.length + 1)}`, files: [file] })),
];

describe('Helm chart charts/concord', () => {
  it('has the ci profiles the checks rely on', () => {
    const names = ciValues.map((file) => file.slice(CI_DIR.length + 1));
    for (const name of ['small-values.yaml', 'tls-values.yaml', 'jaeger-values.yaml']) assert.ok(names.includes(name), `charts/concord/ci/${name} is missing (found ${names.join(', ')})`);
  });

  it('values.schema.json closes every object (additionalProperties: false) but the listed open ones', () => {
    const schema = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8')) as unknown;
    // Open by nature: Helm's global, maps of names to strings (their values typed), and the affinity
    // kinds passed to Kubernetes as they are.
    const open = new Set([
      '/properties/global',
      '/definitions/stringMap',
      '/properties/tracing/properties/resourceAttributes',
      '/definitions/affinity/properties/nodeAffinity',
      '/definitions/affinity/properties/podAffinity',
      '/definitions/affinity/properties/podAntiAffinity',
    ]);
    const found: string[] = [];
    const walk = (node: unknown, path: string): void => {
      if (Array.isArray(node)) {
        node.forEach((item, i) => walk(item, `${path}/${i}`));
        return;
      }
      if (!isMap(node)) return;
      const isObjectSchema = node['type'] === 'object' || (Array.isArray(node['type']) && node['type'].includes('object'));
      if (isObjectSchema && node['additionalProperties'] !== false) found.push(path);
      for (const [key, value] of Object.entries(node)) if (isMap(value) || Array.isArray(value)) walk(value, `${path}/${key}`);
    };
    walk(schema, '');
    assert.deepEqual(found.filter((path) => path !== '' && !open.has(path)), [], 'object schemas without additionalProperties: false');
    assert.equal(isMap(schema) && schema['additionalProperties'], false, 'the top level is closed');
    for (const path of open) assert.ok(found.includes(path), `${path} is listed as open but is no longer in the schema (or is closed now): update the list`);
  });

  for (const profile of profiles) {
    describe(profile.label, () => {
      it('passes helm lint --strict', async () => {
        const result = await helm(['lint', '--strict', CHART, '--namespace', NAMESPACE, ...valuesArgs(profile.files, [])]);
        assert.equal(result.code, 0, `helm lint --strict ${describeResult(result)}`);
        assert.match(result.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
      });

      it('renders valid Kubernetes objects wired into working consensus groups', async () => {
        checkRelease(await render(profile.label, profile.files));
      });
    });
  }

  for (const profile of [
    { label: 'default values', files: [] as string[] },
    { label: 'ci/tls-values.yaml', files: [join(CI_DIR, 'tls-values.yaml')] },
  ]) {
    it(`${profile.label}: concord serve <role> accepts the rendered flags and environment and answers the probes`, async () => {
      const [coordinatorPort, shardPort, metricsPort] = (await freePorts(3)) as [number, number, number];
      const sets = ['--set', `coordinator.port=${coordinatorPort}`, '--set', `shards.port=${shardPort}`, '--set', `metrics.port=${metricsPort}`, '--set', 'listenHost=127.0.0.1'];
      const rendered = await render(`${profile.label}, local ports`, profile.files, sets, {
        coordinator: { port: coordinatorPort },
        shards: { port: shardPort },
        metrics: { port: metricsPort },
      });
      const workDir = await mkdtemp(join(tmpdir(), 'concord-chart-'));
      try {
        let tlsDir: string | undefined;
        if (rendered.values.tls.enabled) {
          // The generated Secret's files, as the pods see them in their TLS volume.
          tlsDir = join(workDir, 'tls');
          await mkdir(tlsDir);
          const data = named(rendered, 'Secret', `${fullname(rendered.values)}-tls`).data ?? {};
          for (const file of ['tls.crt', 'tls.key', 'ca.crt']) await writeFile(join(tlsDir, file), Buffer.from(data[file] ?? '', 'base64'));
        }
        const groups = consensusGroups(rendered.values);
        // One at a time: every member of a release uses the same metrics port.
        for (const group of [groups[0]!, groups[1]!]) await runMember(rendered, group, workDir, tlsDir);
      } finally {
        await rm(workDir, { recursive: true, force: true });
      }
    });
  }

  it('the small profile fits in 2 GiB of memory, requests and limits, the helm test included', async () => {
    const rendered = await render('ci/small-values.yaml', [join(CI_DIR, 'small-values.yaml')]);
    const { requests, limits, unlimited } = totalMemory(rendered);
    assert.deepEqual(unlimited, [], 'every container of the small profile has a memory limit');
    assert.ok(limits <= 2 * GIB, `memory limits add up to ${(limits / 2 ** 20).toFixed(0)} MiB, over 2 GiB`);
    assert.ok(requests <= limits, `memory requests (${requests}) exceed limits (${limits})`);
    // And it is a real cluster: a meta group of three and replicated shard groups.
    assert.equal(statefulSetSpec(named(rendered, 'StatefulSet', `${RELEASE}-concord-coordinator`)).replicas, 3);
    assert.ok(ofKind(rendered, 'StatefulSet').length >= 3, 'at least two shard groups');
  });

  it('generates a TLS certificate for every name members and clients dial, signed by its CA', async () => {
    const rendered = await render('ci/tls-values.yaml', [join(CI_DIR, 'tls-values.yaml')]);
    checkGeneratedCertificate(rendered);
    // With tls.existingSecret nothing is generated, and the pods mount that Secret.
    const existing = await render('tls.existingSecret', [join(CI_DIR, 'tls-values.yaml')], ['--set', 'tls.existingSecret=from-cert-manager'], { tls: { existingSecret: 'from-cert-manager' } });
    assert.equal(ofKind(existing, 'Secret').length, 0, 'no generated Secret with tls.existingSecret');
    checkRelease(existing);
  });

  it('--set shards.groups=5 renders five shard groups, all on the coordinators\' ring', async () => {
    const rendered = await render('shards.groups=5', [], ['--set', 'shards.groups=5'], { shards: { groups: 5 } });
    checkRelease(rendered);
    assert.deepEqual(
      ofKind(rendered, 'StatefulSet').map((sts) => sts.metadata.name).sort(),
      [`${RELEASE}-concord-coordinator`, ...['g1', 'g2', 'g3', 'g4', 'g5'].map((g) => `${RELEASE}-concord-shard-${g}`)],
    );
  });

  it('named groups, five replicas per group and a single coordinator keep every invariant', async () => {
    const rendered = await render(
      'named groups',
      [],
      ['--set-json', 'shards.groups=["users","orders"]', '--set', 'shards.replicas=5', '--set', 'coordinator.replicas=1', '--set', 'antiAffinity=hard'],
      { shards: { groups: ['users', 'orders'], replicas: 5 }, coordinator: { replicas: 1 }, antiAffinity: 'hard' },
    );
    checkRelease(rendered);
    const minAvailable = ofKind(rendered, 'PodDisruptionBudget').map((pdb) => [pdb.metadata.name, (pdb.spec as { minAvailable: number }).minAvailable]);
    assert.deepEqual(minAvailable, [
      [`${RELEASE}-concord-coordinator`, 1],
      [`${RELEASE}-concord-shard-users`, 3],
      [`${RELEASE}-concord-shard-orders`, 3],
    ]);
  });

  describe('NOTES.txt', () => {
    for (const profile of profiles) {
      it(`${profile.label}: renders the exact port-forward, grpcurl, helm test and Jaeger steps`, async () => {
        const notes = await renderNotes(profile.label, profile.files);
        const values = effectiveValues(profile.files);
        const client = `${fullname(values)}-coordinator`;
        const port = values.coordinator.service.port;
        assert.ok(notes.includes(`kubectl -n ${NAMESPACE} port-forward svc/${client} ${port}:${port}`), `${profile.label}: port-forward to the client Service\n${notes}`);
        assert.ok(notes.includes(`helm test ${RELEASE} -n ${NAMESPACE} --logs`), `${profile.label}: helm test\n${notes}`);
        const grpcurl = commandLines(notes, 'grpcurl');
        const target = values.tls.enabled ? `localhost:${port}` : `127.0.0.1:${port}`;
        const connect = values.tls.enabled ? 'grpcurl -cacert ca.crt -cert tls.crt -key tls.key' : 'grpcurl -plaintext';
        assert.ok(grpcurl.includes(`${connect} -d '{"key":"hello","value":"d29ybGQ="}' ${target} concord.v1.KV/Put`), `${profile.label}: grpcurl Put\n${grpcurl.join('\n')}`);
        assert.ok(grpcurl.includes(`${connect} -d '{"key":"hello"}' ${target} concord.v1.KV/Get`), `${profile.label}: grpcurl Get\n${grpcurl.join('\n')}`);
        if (values.tls.enabled) {
          const secret = values.tls.existingSecret !== '' ? values.tls.existingSecret : `${fullname(values)}-tls`;
          for (const file of ['ca.crt', 'tls.crt', 'tls.key']) {
            assert.ok(notes.includes(`get secret ${secret} -o jsonpath='{.data.${file.replace('.', '\\.')}}' | base64 -d > ${file}`), `${profile.label}: how to get ${file}\n${notes}`);
          }
        }
        const jaegerForward = `kubectl -n ${NAMESPACE} port-forward svc/${fullname(values)}-jaeger 16686:16686`;
        assert.equal(notes.includes(jaegerForward), values.jaeger.enabled, `${profile.label}: Jaeger UI port-forward only with jaeger.enabled\n${notes}`);
        assert.doesNotMatch(notes, /\n\s*\n\s*\n/, `${profile.label}: no double blank lines\n${notes}`);
      });
    }

    it('its grpcurl and CLI commands work against a running cluster', async () => {
      if (!existsSync(GRPCURL)) throw new Error('grpcurl is not installed in .tools/bin: run `bash scripts/install-tools.sh grpcurl`');
      const notes = await renderNotes('default values', []);
      const cluster = await startLocalCluster({ groups: ['g1', 'g2'] });
      try {
        const address = cluster.coordinatorAddress;
        const expected: [RegExp, RegExp][] = [
          [/concord\.v1\.KV\/Put$/, /"version": "\d+"/],
          [/concord\.v1\.KV\/Get$/, /"value": "d29ybGQ="/],
          [/concord\.v1\.Cluster\/Status$/, /"groupId": "g2"/],
        ];
        for (const [command, output] of expected) {
          const line = commandLines(notes, 'grpcurl').find((candidate) => command.test(candidate));
          assert.ok(line, `NOTES.txt has no grpcurl line for ${command}`);
          // The notes' port-forward makes the coordinator 127.0.0.1:7070; here it is the test cluster's.
          const result = await runCommand('/bin/sh', ['-c', line.replace('grpcurl ', `'${GRPCURL}' `).replace('127.0.0.1:7070', address)], { timeoutMs: 20_000 });
          assert.equal(result.code, 0, `${line}\n${describeResult(result)}`);
          assert.match(result.stdout, output, `${line}\n${describeResult(result)}`);
        }
        const cli = commandLines(notes, 'npx concord')[0];
        assert.ok(cli, 'NOTES.txt has a CLI line for use through the port-forward');
        const args = cli.replace(/^npx concord /, '').replace('127.0.0.1:7070', address).split(' ');
        const result = await runCommand(nodeBinary, [CONCORD_CLI, ...args], { timeoutMs: 20_000 });
        assert.equal(result.code, 0, `${cli}\n${describeResult(result)}`);
        assert.equal(result.stdout.trim(), 'world', `${cli}\n${describeResult(result)}`);
      } finally {
        await cluster.stop();
      }
    });
  });

  describe('refuses bad values with a message naming them', () => {
    const schemaError = (path: string) => new RegExp(`values don't meet the specifications of the schema[\\s\\S]*'${path.replaceAll('/', '\\/')}'`);
    // Breaks of values.schema.json: helm template, helm install and helm lint --strict all fail.
    const schemaCases: { why: string; sets: string[]; pattern: RegExp }[] = [
      { why: 'an unknown key', sets: ['--set', 'coordinator.replicsa=3'], pattern: /additional properties 'replicsa' not allowed/ },
      { why: 'an unknown top-level key', sets: ['--set', 'shard.replicas=3'], pattern: /additional properties 'shard' not allowed/ },
      { why: 'zero coordinators', sets: ['--set', 'coordinator.replicas=0'], pattern: schemaError('/coordinator/replicas') },
      { why: 'zero shard replicas', sets: ['--set', 'shards.replicas=0'], pattern: schemaError('/shards/replicas') },
      { why: 'replicas as a string', sets: ['--set-string', 'shards.replicas=3'], pattern: /'\/shards\/replicas': got string, want integer/ },
      { why: 'replicas as a word', sets: ['--set', 'coordinator.replicas=three'], pattern: /'\/coordinator\/replicas': got string, want integer/ },
      { why: 'no shard groups', sets: ['--set', 'shards.groups=0'], pattern: schemaError('/shards/groups') },
      { why: 'a group id that is not a DNS label', sets: ['--set-json', 'shards.groups=["Users"]'], pattern: schemaError('/shards/groups') },
      { why: 'a group id twice', sets: ['--set-json', 'shards.groups=["a","a"]'], pattern: schemaError('/shards/groups') },
      { why: 'a log level that does not exist', sets: ['--set', 'logLevel=loud'], pattern: schemaError('/logLevel') },
      { why: 'an unknown OTLP protocol', sets: ['--set', 'tracing.protocol=thrift'], pattern: schemaError('/tracing/protocol') },
      { why: 'a port out of range', sets: ['--set', 'shards.port=70000'], pattern: schemaError('/shards/port') },
      { why: 'a misspelt resource name', sets: ['--set', 'resources.limits.memroy=1Gi'], pattern: /additional properties 'memroy' not allowed/ },
      { why: 'a malformed duration', sets: ['--set', 'coordinator.shardTimeout=5 seconds'], pattern: schemaError('/coordinator/shardTimeout') },
      { why: 'an unknown anti-affinity mode', sets: ['--set', 'antiAffinity=strict'], pattern: schemaError('/antiAffinity') },
    ];
    for (const { why, sets, pattern } of schemaCases) {
      it(`${why}: helm template and helm lint --strict fail`, async () => {
        await expectFailure(['template', RELEASE, CHART, '--namespace', NAMESPACE, ...sets], pattern, why);
        await expectFailure(['lint', '--strict', CHART, '--namespace', NAMESPACE, ...sets], pattern, why);
      });
    }

    // Checks across values, in the templates: helm template and helm install fail. helm lint runs
    // templates with `fail` turned into an [INFO] line (Helm's lint mode), so it reports the
    // message without failing; the check is that the message is there.
    const templateCases: { why: string; sets: string[]; pattern: RegExp }[] = [
      { why: 'the reserved group id meta', sets: ['--set-json', 'shards.groups=["a","meta"]'], pattern: /shards.groups: meta names the coordinators' own group/ },
      { why: 'tracing with nowhere to send', sets: ['--set', 'tracing.enabled=true'], pattern: /tracing.enabled needs somewhere to send traces/ },
      { why: 'heartbeats no faster than elections', sets: ['--set', 'shards.raft.heartbeatTicks=10'], pattern: /shards.raft.heartbeatTicks \(10\) must be less than shards.raft.electionTicks \(10\)/ },
      { why: 'metrics on the gRPC port', sets: ['--set', 'metrics.port=7070'], pattern: /metrics.port \(7070\) is also coordinator.port/ },
      { why: 'a chart flag repeated in extraArgs', sets: ['--set-json', 'coordinator.extraArgs=["--sync=false"]'], pattern: /coordinator.extraArgs: --sync is set by the chart/ },
      { why: 'a StatefulSet name too long for its pods', sets: ['--set', 'fullnameOverride=a-rather-long-release-name-for-concord', '--set-json', 'shards.groups=["a-long-group-name"]'], pattern: /StatefulSet name "a-rather-long-release-name-for-concord-shard-a-long-group-name" is \d+ characters; at most 52/ },
    ];
    for (const { why, sets, pattern } of templateCases) {
      it(`${why}: helm template fails, helm lint reports it`, async () => {
        await expectFailure(['template', RELEASE, CHART, '--namespace', NAMESPACE, ...sets], pattern, why);
        const lint = await helm(['lint', '--strict', CHART, '--namespace', NAMESPACE, ...sets]);
        assert.match(lint.stdout + lint.stderr, pattern, `${why}: helm lint should report it\n${describeResult(lint)}`);
      });
    }
  });
});
