// Keeps the Grafana dashboard (deploy/grafana/concord.json) honest: its JSON is a well-formed
// dashboard (unique panel ids, every panel on the Prometheus data source variable with queries,
// nothing overlapping), and every metric its PromQL names is one that real Concord processes
// export. A small cluster runs with --metrics-listen, takes a few writes, and a coordinator's and
// a shard replica's GET /metrics are scraped; a histogram counts with its _bucket, _sum and _count
// series. The other way round, every Concord metric they export has a panel.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConcordClient } from '@concord/client';
import { startLocalCluster, type LocalCluster } from './harness/cluster.js';
import { repoRoot } from './harness/paths.js';

const DASHBOARD_PATH = join(repoRoot, 'deploy', 'grafana', 'concord.json');
const METRICS_DOC_PATH = join(repoRoot, 'docs', 'metrics.md');
/** The dashboard is for a current Grafana: dashboard schema version 39 (Grafana 11) or later. */
const MIN_SCHEMA_VERSION = 39;
const GRID_COLUMNS = 24;
/** The template variables every query may use, besides Grafana's own ($__rate_interval, …). */
const REQUIRED_VARIABLES = ['datasource', 'job', 'instance', 'group'];
const PANEL_DATASOURCE = { type: 'prometheus', uid: '${datasource}' };

interface Target {
  refId?: string;
  expr?: string;
  datasource?: unknown;
}

interface Panel {
  id?: unknown;
  type?: string;
  title?: string;
  datasource?: unknown;
  gridPos?: { x: number; y: number; w: number; h: number };
  targets?: Target[];
  panels?: Panel[];
}

interface Variable {
  type?: string;
  name?: string;
  query?: unknown;
  datasource?: unknown;
}

interface Dashboard {
  title?: string;
  uid?: string;
  schemaVersion?: number;
  templating?: { list?: Variable[] };
  panels?: Panel[];
}

// ---------------------------------------------------------------- PromQL

/** Words of PromQL that look like metric names but are not. */
const PROMQL_KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan']);

/**
 * The metric names a PromQL expression selects. String literals, label matchers, range and
 * subquery brackets, grouping clauses and Grafana variables are removed first; what remains is
 * function and aggregation names (followed by a parenthesis), keywords, numbers and metric names.
 */
export function metricNamesOf(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\boffset\s+-?\w+/g, ' ')
    .replace(/\$\{[^}]*\}|\$\w+/g, ' ');
  const names = new Set<string>();
  for (const match of stripped.matchAll(/(?<![\w.:])[a-zA-Z_:][\w:]*/g)) {
    const name = match[0];
    if (/^\s*\(/.test(stripped.slice(match.index + name.length))) continue; // a function or an aggregation
    if (PROMQL_KEYWORDS.has(name.toLowerCase())) continue;
    names.add(name);
  }
  return [...names];
}

/** The metric names of a template variable's query: `label_values(<selector>, <label>)` names the selector's. */
function variableMetricNames(query: string): string[] {
  const labelValues = /^\s*label_values\((.*),\s*\w+\s*\)\s*$/.exec(query);
  if (labelValues !== null) return metricNamesOf(labelValues[1]!);
  if (/^\s*label_values\(\s*\w+\s*\)\s*$/.test(query)) return [];
  return metricNamesOf(query);
}

/** Grafana variables an expression refers to: $name, ${name} and ${name:format}. */
function variablesOf(expr: string): string[] {
  return [...expr.matchAll(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g)].map((match) => (match[1] ?? match[2])!);
}

// ---------------------------------------------------------------- the exposition format

/**
 * The series names a Prometheus text exposition offers to a query: every sample's name, every
 * declared counter and gauge (declared but not yet observed still counts: a counter with labels
 * has no sample before its first increment), and a declared histogram's or summary's _bucket,
 * _sum and _count.
 */
export function exportedSeriesNames(exposition: string): { names: Set<string>; families: Map<string, string> } {
  const names = new Set<string>();
  const families = new Map<string, string>();
  for (const line of exposition.split('\n')) {
    const declared = /^# TYPE (\S+) (\S+)/.exec(line);
    if (declared !== null) {
      const [, family, type] = declared as unknown as [string, string, string];
      families.set(family, type);
      if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(family + suffix);
      else if (type === 'summary') for (const suffix of ['', '_sum', '_count']) names.add(family + suffix);
      else names.add(family);
      continue;
    }
    const sample = /^([a-zA-Z_:][\w:]*)(?:\{|\s)/.exec(line);
    if (sample !== null) names.add(sample[1]!);
  }
  return { names, families };
}

// ---------------------------------------------------------------- the dashboard

function loadDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as Dashboard;
}

/** Every panel, those inside rows included. */
function allPanels(dashboard: Dashboard): Panel[] {
  return (dashboard.panels ?? []).flatMap((panel) => [panel, ...(panel.panels ?? [])]);
}

function queryPanels(dashboard: Dashboard): Panel[] {
  return allPanels(dashboard).filter((panel) => panel.type !== 'row');
}

/** Every metric name the dashboard's queries and variables use, with where each is used. */
function dashboardMetrics(dashboard: Dashboard): Map<string, string[]> {
  const uses = new Map<string, string[]>();
  const note = (name: string, where: string): void => {
    uses.set(name, [...(uses.get(name) ?? []), where]);
  };
  for (const panel of queryPanels(dashboard)) {
    for (const target of panel.targets ?? []) {
      for (const name of metricNamesOf(target.expr ?? '')) note(name, `panel "${panel.title}" ${target.refId}`);
    }
  }
  for (const variable of dashboard.templating?.list ?? []) {
    if (variable.type === 'query' && typeof variable.query === 'string') {
      for (const name of variableMetricNames(variable.query)) note(name, `variable $${variable.name}`);
    }
  }
  return uses;
}

function metricsAddressOf(cluster: LocalCluster, name: string): string {
  for (const line of cluster.outputOf(name)) {
    if (!line.startsWith('{')) continue;
    const record = JSON.parse(line) as { msg?: unknown; metrics_address?: unknown };
    if (record.msg === 'serving' && typeof record.metrics_address === 'string') return record.metrics_address;
  }
  throw new Error(`${name} logged no "serving" line with metrics_address; is --metrics-listen passed?\n${cluster.logs(name)}`);
}

async function scrape(address: string): Promise<string> {
  const response = await fetch(`http://${address}/metrics`, { signal: AbortSignal.timeout(5_000) });
  assert.equal(response.status, 200, `GET http://${address}/metrics`);
  return response.text();
}

describe('metricNamesOf', () => {
  it('finds the metrics of selectors, past functions, aggregations, matchers, ranges and grouping', () => {
    assert.deepEqual(
      metricNamesOf('histogram_quantile(0.99, sum by (group, le) (rate(concord_raft_proposal_seconds_bucket{job=~"$job", outcome="applied"}[$__rate_interval])))'),
      ['concord_raft_proposal_seconds_bucket'],
    );
    assert.deepEqual(
      metricNamesOf('max by (group) (concord_raft_applied_index{group=~"$group"}) - on (group) group_right concord_raft_applied_index'),
      ['concord_raft_applied_index'],
    );
    assert.deepEqual(
      metricNamesOf('sum(rate(a_total{code=~"x|y"}[5m])) * on (instance) group_left (group) group by (instance, group) (b) or vector(0)'),
      ['a_total', 'b'],
    );
    assert.deepEqual(metricNamesOf('time() - process_start_time_seconds offset 5m > bool 1e3'), ['process_start_time_seconds']);
  });

  it('is not fooled by label values and strings that look like metric names', () => {
    assert.deepEqual(metricNamesOf('up{job="concord_raft_term", instance=~"a:1|b:2"}'), ['up']);
  });

  it('reads the selector of a label_values() variable query', () => {
    assert.deepEqual(variableMetricNames('label_values(concord_raft_term{job=~"$job"}, group)'), ['concord_raft_term']);
    assert.deepEqual(variableMetricNames('label_values(job)'), []);
  });
});

describe('exportedSeriesNames', () => {
  it('offers a histogram by its series, and declared counters without samples', () => {
    const { names } = exportedSeriesNames(
      [
        '# HELP h_seconds x',
        '# TYPE h_seconds histogram',
        'h_seconds_bucket{le="1"} 0',
        '# TYPE c_total counter',
        '# TYPE g gauge',
        'g{group="g1"} 3',
      ].join('\n'),
    );
    assert.deepEqual([...names].sort(), ['c_total', 'g', 'h_seconds_bucket', 'h_seconds_count', 'h_seconds_sum']);
  });
});

describe('the Grafana dashboard deploy/grafana/concord.json', () => {
  const dashboard = loadDashboard();

  it('is a dashboard of a current Grafana with a title and a stable uid', () => {
    assert.ok(typeof dashboard.title === 'string' && dashboard.title !== '');
    assert.ok(typeof dashboard.uid === 'string' && /^[\w-]{1,40}$/.test(dashboard.uid), `uid ${dashboard.uid}`);
    assert.ok(typeof dashboard.schemaVersion === 'number' && dashboard.schemaVersion >= MIN_SCHEMA_VERSION, `schemaVersion ${dashboard.schemaVersion}`);
  });

  it('has a Prometheus data source variable and job, instance and group variables on it', () => {
    const variables = new Map((dashboard.templating?.list ?? []).map((variable) => [variable.name, variable]));
    for (const name of REQUIRED_VARIABLES) assert.ok(variables.has(name), `no template variable ${name}`);
    assert.equal(variables.get('datasource')?.type, 'datasource');
    assert.equal(variables.get('datasource')?.query, 'prometheus');
    for (const name of ['job', 'instance', 'group']) {
      assert.equal(variables.get(name)?.type, 'query', `$${name}`);
      assert.deepEqual(variables.get(name)?.datasource, PANEL_DATASOURCE, `$${name} queries the data source variable`);
    }
  });

  it('gives every panel a unique id', () => {
    const ids = allPanels(dashboard).map((panel) => panel.id);
    for (const id of ids) assert.ok(Number.isInteger(id) && (id as number) > 0, `panel id ${String(id)}`);
    const repeated = ids.filter((id, index) => ids.indexOf(id) !== index);
    assert.deepEqual(repeated, [], 'panel ids used twice');
  });

  it('gives every panel the data source variable and queries, each with its own refId', () => {
    const panels = queryPanels(dashboard);
    assert.ok(panels.length >= 10, `${panels.length} panels`);
    for (const panel of panels) {
      const where = `panel ${String(panel.id)} "${panel.title}"`;
      assert.ok(typeof panel.title === 'string' && panel.title !== '', `${where} has a title`);
      assert.deepEqual(panel.datasource, PANEL_DATASOURCE, `${where} uses \${datasource}`);
      assert.ok(Array.isArray(panel.targets) && panel.targets.length > 0, `${where} has queries`);
      const refIds = panel.targets.map((target) => target.refId);
      assert.equal(new Set(refIds).size, refIds.length, `${where}: refIds ${refIds.join(',')} repeat`);
      for (const target of panel.targets) {
        assert.ok(typeof target.refId === 'string' && target.refId !== '', `${where}: a query without refId`);
        assert.ok(typeof target.expr === 'string' && target.expr.trim() !== '', `${where} ${target.refId}: no expr`);
        assert.deepEqual(target.datasource, PANEL_DATASOURCE, `${where} ${target.refId} uses \${datasource}`);
        assert.ok(metricNamesOf(target.expr).length > 0, `${where} ${target.refId} names no metric: ${target.expr}`);
      }
    }
  });

  it('uses only variables it defines, and Grafana built-ins', () => {
    const defined = new Set((dashboard.templating?.list ?? []).map((variable) => variable.name));
    const used = [
      ...queryPanels(dashboard).flatMap((panel) => (panel.targets ?? []).map((target) => target.expr ?? '')),
      ...(dashboard.templating?.list ?? []).map((variable) => (typeof variable.query === 'string' ? variable.query : '')),
    ].flatMap(variablesOf);
    const unknown = used.filter((name) => !name.startsWith('__') && !defined.has(name));
    assert.deepEqual([...new Set(unknown)], [], 'variables used but not defined');
  });

  it('lays the panels out on the 24-column grid without overlaps', () => {
    const taken = new Map<string, string>();
    for (const panel of allPanels(dashboard)) {
      const where = `panel ${String(panel.id)} "${panel.title}"`;
      const grid = panel.gridPos;
      assert.ok(grid !== undefined, `${where} has no gridPos`);
      assert.ok(grid.w > 0 && grid.h > 0 && grid.x >= 0 && grid.y >= 0 && grid.x + grid.w <= GRID_COLUMNS, `${where}: gridPos ${JSON.stringify(grid)}`);
      for (let y: number = grid.y; y < grid.y + grid.h; y++) {
        for (let x: number = grid.x; x < grid.x + grid.w; x++) {
          const other = taken.get(`${x},${y}`);
          assert.equal(other, undefined, `${where} overlaps ${other} at column ${x}, row ${y}`);
          taken.set(`${x},${y}`, where);
        }
      }
    }
  });

  it('documents in docs/metrics.md every Concord metric it uses', () => {
    const doc = readFileSync(METRICS_DOC_PATH, 'utf8');
    const families = new Set([...dashboardMetrics(dashboard).keys()].filter((name) => name.startsWith('concord_')).map((name) => name.replace(/_(bucket|sum|count)$/, '')));
    const undocumented = [...families].filter((family) => !doc.includes(`\`${family}\``));
    assert.deepEqual(undocumented, [], 'Concord metrics the dashboard uses that docs/metrics.md does not list');
  });

  describe('against the metrics real processes export', () => {
    let cluster: LocalCluster;
    let exported: Set<string>;
    let concordFamilies: string[];

    before(async () => {
      cluster = await startLocalCluster({
        groups: ['g1', 'g2'],
        // Port 0: each process picks a free port and names it in its "serving" line.
        shardArgs: ['--metrics-listen', '127.0.0.1:0'],
        coordinatorArgs: ['--metrics-listen', '127.0.0.1:0'],
      });
      // Writes and reads both ways: straight to the shard leaders (the SDK's default) and through
      // the coordinators (concord.v1.KV), so the histograms of calls and proposals have samples.
      const direct = await ConcordClient.connect({ address: cluster.coordinatorAddresses.join(',') });
      const viaCoordinators = await ConcordClient.connect({ address: cluster.coordinatorAddresses.join(','), routing: 'coordinator' });
      try {
        for (let i = 0; i < 8; i++) {
          await direct.put(`dashboard:${i}`, `value ${i}`);
          await viaCoordinators.put(`dashboard:via:${i}`, `value ${i}`);
        }
        await direct.get('dashboard:0');
        await viaCoordinators.get('dashboard:via:0');
        for await (const _ of direct.scan({ prefix: 'dashboard:', limit: 5 })) void _;
        await direct.status();
      } finally {
        direct.close();
        viaCoordinators.close();
      }
      // The meta leader and a shard group's leader: the leaders record proposals; followers do not.
      const coordinator = (await cluster.metaLeader()).name;
      const shard = (await cluster.leaderOf('g1')).name;
      exported = new Set<string>();
      const families = new Set<string>();
      for (const name of [coordinator, shard]) {
        const { names, families: declared } = exportedSeriesNames(await scrape(metricsAddressOf(cluster, name)));
        for (const each of names) exported.add(each);
        for (const family of declared.keys()) families.add(family);
      }
      concordFamilies = [...families].filter((family) => family.startsWith('concord_'));
    });

    after(async () => {
      await cluster?.stop();
    });

    it('every metric the dashboard uses is exported by a coordinator or a shard replica', () => {
      const uses = dashboardMetrics(dashboard);
      assert.ok(uses.size > 0);
      const missing = [...uses].filter(([name]) => !exported.has(name)).map(([name, where]) => `${name} (${where.join('; ')})`);
      assert.deepEqual(missing, [], `metrics the processes do not export; they export:\n${[...exported].sort().join('\n')}`);
    });

    it('every Concord metric the processes export has a panel', () => {
      const used = new Set([...dashboardMetrics(dashboard).keys()].map((name) => name.replace(/_(bucket|sum|count)$/, '')));
      assert.ok(concordFamilies.length > 0, 'the scrapes had no concord_* metric');
      const unused = concordFamilies.filter((family) => !used.has(family));
      assert.deepEqual(unused, [], 'Concord metrics no panel of deploy/grafana/concord.json shows');
    });
  });
});
