// What `bench kv` measures: the echo floor, then Concord put and get for each routing, at each
// concurrency.
import type { Routing } from '@concord/client';

export type Scenario =
  | { id: string; target: 'echo'; routing: null; op: 'echo'; concurrency: number }
  | { id: string; target: 'concord'; routing: Routing; op: 'put' | 'get'; concurrency: number };

export const ROUTINGS: readonly Routing[] = ['coordinator', 'direct'];
export const CONCORD_OPS = ['put', 'get'] as const;

/** Every scenario in the order they run: echo first, then per routing puts, then gets. */
export function allScenarios(concurrencies: readonly number[]): Scenario[] {
  const scenarios: Scenario[] = concurrencies.map((concurrency) => ({
    id: `echo-c${concurrency}`,
    target: 'echo',
    routing: null,
    op: 'echo',
    concurrency,
  }));
  for (const routing of ROUTINGS) {
    for (const op of CONCORD_OPS) {
      for (const concurrency of concurrencies) {
        scenarios.push({ id: `${routing}-${op}-c${concurrency}`, target: 'concord', routing, op, concurrency });
      }
    }
  }
  return scenarios;
}

/**
 * The scenarios matching any term; a term matches when each of its dash-separated words is one
 * of the scenario id's words ("direct-put" matches direct-put-c1 and direct-put-c64). Terms that
 * match nothing are returned so the caller can reject them.
 */
export function selectScenarios(scenarios: readonly Scenario[], terms: readonly string[]): { selected: Scenario[]; unmatched: string[] } {
  if (terms.length === 0) return { selected: [...scenarios], unmatched: [] };
  const matches = (scenario: Scenario, term: string): boolean => {
    const words = new Set(scenario.id.split('-'));
    return term.toLowerCase().split('-').every((word) => words.has(word));
  };
  return {
    selected: scenarios.filter((scenario) => terms.some((term) => matches(scenario, term))),
    unmatched: terms.filter((term) => !scenarios.some((scenario) => matches(scenario, term))),
  };
}
