/**
 * Counters and histograms for the request path. prom-client's own hash and validate the labels
 * and allocate on every inc() and observe(), even on a child from labels(); these keep a child's
 * numbers in plain fields, so a request costs an increment and a bucket scan. prom-client reads
 * them at scrape time through get(), the interface every metric of its Registry has (and which
 * its AggregatorRegistry sums across worker processes).
 */

type Labels = Record<string, string>;

/** Where a metric is registered (prom-client's Registry). */
type Registers = { registerMetric(metric: never): void }[];

interface MetricValue {
  labels: Labels;
  value: number;
  metricName?: string;
}

export interface MetricSnapshot {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  values: MetricValue[];
  aggregator: 'sum';
}

/** Children by their label values, joined by a character no label value has (they are bounded sets of ours). */
const keyOf = (labels: Labels, names: readonly string[]) => names.map((n) => labels[n] ?? '').join('\u0001');

export class CounterChild {
  value = 0;
  readonly labels: Labels;
  constructor(labels: Labels) {
    this.labels = labels;
  }
  inc(by = 1): void {
    this.value += by;
  }
}

export class FastCounter {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  private readonly children = new Map<string, CounterChild>();

  constructor(o: { name: string; help: string; labelNames?: readonly string[]; registers?: Registers }) {
    this.name = o.name;
    this.help = o.help;
    this.labelNames = o.labelNames ?? [];
    for (const r of o.registers ?? []) r.registerMetric(this as never);
  }

  /** The child of these label values, made once: keep it. */
  labels(labels: Labels = {}): CounterChild {
    const key = keyOf(labels, this.labelNames);
    let c = this.children.get(key);
    if (!c) this.children.set(key, (c = new CounterChild({ ...labels })));
    return c;
  }

  inc(labels: Labels = {}, by = 1): void {
    this.labels(labels).inc(by);
  }

  get(): MetricSnapshot {
    const values = [...this.children.values()].map((c) => ({ labels: c.labels, value: c.value }));
    // An unlabelled counter shows 0 before its first increment, like prom-client's.
    if (this.labelNames.length === 0 && values.length === 0) values.push({ labels: {}, value: 0 });
    return { name: this.name, help: this.help, type: 'counter', values, aggregator: 'sum' };
  }
}

export class HistogramChild {
  /** counts[i]: observations in bucket i (not cumulative); the last one is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  readonly labels: Labels;
  private readonly bounds: readonly number[];
  constructor(labels: Labels, bounds: readonly number[]) {
    this.labels = labels;
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

export class FastHistogram {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  private readonly bounds: readonly number[];
  private readonly children = new Map<string, HistogramChild>();

  constructor(o: {
    name: string;
    help: string;
    labelNames?: readonly string[];
    buckets: readonly number[];
    registers?: Registers;
  }) {
    this.name = o.name;
    this.help = o.help;
    this.labelNames = o.labelNames ?? [];
    this.bounds = [...o.buckets].sort((a, b) => a - b);
    for (const r of o.registers ?? []) r.registerMetric(this as never);
  }

  labels(labels: Labels = {}): HistogramChild {
    const key = keyOf(labels, this.labelNames);
    let c = this.children.get(key);
    if (!c) this.children.set(key, (c = new HistogramChild({ ...labels }, this.bounds)));
    return c;
  }

  get(): MetricSnapshot {
    const values: MetricValue[] = [];
    for (const c of this.children.values()) {
      let cumulative = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        cumulative += c.counts[i]!;
        values.push({
          labels: { ...c.labels, le: String(this.bounds[i]) },
          value: cumulative,
          metricName: `${this.name}_bucket`,
        });
      }
      values.push({ labels: { ...c.labels, le: '+Inf' }, value: c.count, metricName: `${this.name}_bucket` });
      values.push({ labels: c.labels, value: c.sum, metricName: `${this.name}_sum` });
      values.push({ labels: c.labels, value: c.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: 'histogram', values, aggregator: 'sum' };
  }
}
