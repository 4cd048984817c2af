import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client';

type MetricJson = MetricObjectWithValues<MetricValue<string>>;

/**
 * Metrics of a node of several workers (`listen.workers` > 1): the primary serves `metrics.listen`
 * (the workers do not bind it), asks every serving worker for its registry over the cluster's IPC
 * channel at each scrape, and answers with them aggregated by prom-client's
 * `AggregatorRegistry.aggregate`: counters and histograms summed, each gauge by the aggregator it
 * declares (`first` for facts of the node such as sessions active or the version, `sum` for
 * per-process amounts). A worker that does not answer in time makes the scrape a 503, never a
 * partial sum, which Prometheus' rate() would read as a counter reset.
 */

/** Primary → worker. */
export interface MetricsRequest {
  gatehouse: 'metrics';
  id: number;
}

/** Worker → primary. */
export interface MetricsReply {
  gatehouse: 'metrics';
  id: number;
  metrics?: MetricJson[];
  error?: string;
}

export function isMetricsRequest(m: unknown): m is MetricsRequest {
  const r = m as MetricsRequest | null;
  return typeof m === 'object' && r !== null && r.gatehouse === 'metrics' && typeof r.id === 'number';
}

/** The IPC end of a worker: `process` in a cluster worker. */
export interface MetricsChannel {
  send?(message: unknown): boolean;
  readonly connected?: boolean;
  on(event: 'message', listener: (message: unknown) => void): unknown;
}

/** The worker's side: answers each of the primary's requests with its registry as JSON. */
export function answerMetricsRequests(registry: Registry, channel: MetricsChannel = process): void {
  channel.on('message', (m) => {
    if (!isMetricsRequest(m)) return;
    const reply = (r: Omit<MetricsReply, 'gatehouse' | 'id'>) => {
      if (channel.connected) channel.send?.({ gatehouse: 'metrics', id: m.id, ...r } satisfies MetricsReply);
    };
    registry.getMetricsAsJSON().then(
      (metrics) => reply({ metrics }),
      (e: unknown) => reply({ error: (e as Error).message }),
    );
  });
}

/** A worker as the primary sees it (node:cluster's Worker). */
export interface MetricsWorker {
  readonly id: number;
  send(message: unknown): boolean;
  isConnected(): boolean;
}

/** A scrape that cannot be answered whole: served as a 503 with this message. */
export class MetricsUnavailableError extends Error {
  readonly status = 503;
  override name = 'MetricsUnavailableError';
}

interface Pending {
  waiting: Set<number>;
  responses: MetricJson[][];
  resolve(text: string): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

/** How long the primary waits for every worker's registry at a scrape. */
export const WORKER_ANSWER_MS = 2000;

/**
 * The primary's side: text() asks the serving workers and aggregates their answers. The
 * listener gets replies through onMessage (the primary's cluster 'message' event).
 */
export class ClusterMetrics {
  readonly contentType = AggregatorRegistry.PROMETHEUS_CONTENT_TYPE;
  private readonly workers: () => MetricsWorker[];
  private readonly timeoutMs: number;
  private readonly pending = new Map<number, Pending>();
  private next = 0;

  constructor(o: { workers: () => MetricsWorker[]; timeoutMs?: number }) {
    this.workers = o.workers;
    this.timeoutMs = o.timeoutMs ?? WORKER_ANSWER_MS;
  }

  text(): Promise<string> {
    const workers = this.workers().filter((w) => w.isConnected());
    if (workers.length === 0) return Promise.reject(new MetricsUnavailableError('no worker is serving yet'));
    const id = this.next++;
    return new Promise<string>((resolve, reject) => {
      const p: Pending = {
        waiting: new Set(workers.map((w) => w.id)),
        responses: [],
        resolve,
        reject,
        timer: setTimeout(() => {
          this.pending.delete(id);
          const late = [...p.waiting].join(', ');
          reject(new MetricsUnavailableError(`worker ${late} did not answer within ${this.timeoutMs} ms`));
        }, this.timeoutMs),
      };
      this.pending.set(id, p);
      for (const w of workers) w.send({ gatehouse: 'metrics', id } satisfies MetricsRequest);
    });
  }

  /** A worker's message; true when it was a metrics reply (a late one is dropped). */
  onMessage(worker: MetricsWorker, m: unknown): boolean {
    const r = m as MetricsReply | null;
    if (typeof m !== 'object' || r === null || r.gatehouse !== 'metrics' || typeof r.id !== 'number') return false;
    const p = this.pending.get(r.id);
    if (!p || !p.waiting.delete(worker.id)) return true;
    if (r.error !== undefined || !Array.isArray(r.metrics)) {
      this.settle(r.id, p);
      p.reject(new MetricsUnavailableError(`worker ${worker.id} could not collect its metrics: ${r.error}`));
      return true;
    }
    p.responses.push(r.metrics);
    if (p.waiting.size > 0) return true;
    this.settle(r.id, p);
    try {
      AggregatorRegistry.aggregate(p.responses).metrics().then(p.resolve, p.reject);
    } catch (e) {
      p.reject(e as Error);
    }
    return true;
  }

  private settle(id: number, p: Pending): void {
    clearTimeout(p.timer);
    this.pending.delete(id);
  }
}
