/**
 * TypeScript client for the auditexport REST gateway.
 *
 * - createAuditExportClient: an openapi-fetch client typed from the OpenAPI document
 *   (src/schema.ts, generated), with the API key attached to every request.
 * - sendNow / watchExportRun: follow a run's NDJSON progress stream to its terminal
 *   message with fetch.
 * - AuditExportError: every failure, with the gRPC code, ErrorInfo reason and
 *   BadRequest field violations of the google.rpc.Status the gateway sent.
 */
import createClient, { type Client, type Middleware } from "openapi-fetch";
import { AuditExportError, GrpcCode, requestIdOf } from "./errors.js";
import { readNdjson } from "./ndjson.js";
import type { components, paths } from "./schema.js";

export type { components, operations, paths } from "./schema.js";
export * from "./errors.js";
export { ndjsonLines, readNdjson } from "./ndjson.js";

/** All schemas of the API, e.g. Schemas["v1Schedule"]. */
export type Schemas = components["schemas"];
export type ExportProgress = Schemas["v1ExportProgress"];
export type ExportPhase = Schemas["v1ExportPhase"];
export type ExportRun = Schemas["v1ExportRun"];
export type Schedule = Schemas["v1Schedule"];
export type StorageIntegration = Schemas["v1StorageIntegration"];
export type Workbook = Schemas["v1Workbook"];

/** One line of the SendNow stream: {"result": {"progress": …}} or {"error": Status}. */
export type SendNowStreamLine =
  paths["/v1/schedules/{id}:sendNow"]["post"]["responses"][200]["content"]["application/json"];
/** One line of the WatchExportRun stream. */
export type WatchExportRunStreamLine =
  paths["/v1/exportRuns/{id}:watch"]["get"]["responses"][200]["content"]["application/json"];
export type ProgressStreamLine = SendNowStreamLine | WatchExportRunStreamLine;

/** The typed openapi-fetch client: client.GET("/v1/schedules/{id}", {params: {path: {id}}}). */
export type AuditExportClient = Client<paths>;

export interface AuditExportClientOptions {
  /** Gateway root, e.g. "http://127.0.0.1:8080" (no /v1). */
  baseUrl: string;
  /** API key (aek_…), sent as "Authorization: Bearer <key>"; a function is asked on every request. */
  apiKey: string | (() => string | Promise<string>);
  /** fetch implementation (defaults to globalThis.fetch). */
  fetch?: (input: Request) => Promise<Response>;
}

/** The phases after which a run's stream ends. */
export const TERMINAL_PHASES: ReadonlySet<ExportPhase> = new Set<ExportPhase>([
  "EXPORT_PHASE_SUCCEEDED",
  "EXPORT_PHASE_FAILED",
  "EXPORT_PHASE_CANCELED",
  "EXPORT_PHASE_SKIPPED",
]);

export function isTerminalPhase(phase: ExportPhase | undefined): boolean {
  return phase !== undefined && TERMINAL_PHASES.has(phase);
}

/** A middleware that sets "Authorization: Bearer <key>" on every request. */
export function bearerAuth(apiKey: AuditExportClientOptions["apiKey"]): Middleware {
  return {
    async onRequest({ request }) {
      const key = typeof apiKey === "function" ? await apiKey() : apiKey;
      request.headers.set("Authorization", `Bearer ${key}`);
      return request;
    },
  };
}

/** Creates the typed client with the API key attached. */
export function createAuditExportClient(opts: AuditExportClientOptions): AuditExportClient {
  const init: Parameters<typeof createClient>[0] = { baseUrl: opts.baseUrl.replace(/\/+$/, "") };
  if (opts.fetch) init.fetch = opts.fetch;
  const client = createClient<paths>(init);
  client.use(bearerAuth(opts.apiKey));
  return client;
}

/**
 * unwrap returns the data of an openapi-fetch result, or throws its error as an
 * AuditExportError:  const { schedule } = unwrap(await client.GET(...)).
 */
export function unwrap<R extends { data?: unknown; error?: unknown; response: Response }>(
  result: R,
): NonNullable<R["data"]> {
  if (result.error !== undefined || !result.response.ok) {
    throw AuditExportError.fromResponse(result.error, result.response);
  }
  return (result.data ?? {}) as NonNullable<R["data"]>;
}

export interface FollowOptions {
  /** Called with every progress message, in order, the terminal one included. */
  onProgress?: (progress: ExportProgress) => void;
  /** Aborting stops following (the run itself goes on; reattach with watchExportRun). */
  signal?: AbortSignal;
}

function isClient(v: AuditExportClient | AuditExportClientOptions): v is AuditExportClient {
  return typeof (v as Partial<AuditExportClient>).POST === "function";
}

function clientOf(v: AuditExportClient | AuditExportClientOptions): AuditExportClient {
  return isClient(v) ? v : createAuditExportClient(v);
}

/** Network failures become AuditExportError(UNAVAILABLE); an abort stays the AbortError it is. */
async function guard<T>(signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof AuditExportError || signal?.aborted || (err instanceof Error && err.name === "AbortError")) {
      throw err;
    }
    const msg = err instanceof Error ? err.message : String(err);
    throw new AuditExportError(GrpcCode.UNAVAILABLE, `request failed: ${msg}`, { cause: err });
  }
}

/**
 * followProgress consumes a progress stream (the body of a SendNow or WatchExportRun
 * answer) to its end and resolves to the terminal ExportProgress. An error line rejects
 * with its AuditExportError; a stream that ends without a terminal message rejects with
 * UNAVAILABLE (the run may still be going: reattach with watchExportRun).
 */
export async function followProgress(
  body: ReadableStream<Uint8Array>,
  opts: FollowOptions = {},
  requestId?: string,
): Promise<ExportProgress> {
  let terminal: ExportProgress | undefined;
  let last: ExportProgress | undefined;
  for await (const line of readNdjson<ProgressStreamLine>(body)) {
    if (line.error) throw AuditExportError.fromStatus(line.error, undefined, requestId);
    const progress = line.result?.progress;
    if (!progress) continue;
    last = progress;
    opts.onProgress?.(progress);
    if (isTerminalPhase(progress.phase)) terminal ??= progress;
  }
  if (!terminal) {
    const run = last?.runId ? ` (run ${last.runId})` : "";
    throw new AuditExportError(
      GrpcCode.UNAVAILABLE,
      `progress stream ended before a terminal message${run}; reattach with watchExportRun`,
    );
  }
  return terminal;
}

/**
 * sendNow runs a schedule's export now (POST /v1/schedules/{id}:sendNow) and follows its
 * progress. It resolves to the terminal progress message — which may be FAILED, CANCELED
 * or SKIPPED: look at `phase` and `error` — and rejects with an AuditExportError when the
 * call is refused (HTTP error) or the stream carries an error.
 */
export async function sendNow(
  client: AuditExportClient | AuditExportClientOptions,
  scheduleId: string,
  opts: FollowOptions = {},
): Promise<ExportProgress> {
  const c = clientOf(client);
  const init = withSignal({ params: { path: { id: scheduleId } }, body: {}, parseAs: "stream" as const }, opts.signal);
  return follow(opts, () => c.POST("/v1/schedules/{id}:sendNow", init));
}

/**
 * watchExportRun follows a run started elsewhere (GET /v1/exportRuns/{id}:watch) the
 * same way as sendNow; a finished run answers its terminal message at once.
 */
export async function watchExportRun(
  client: AuditExportClient | AuditExportClientOptions,
  runId: string,
  opts: FollowOptions = {},
): Promise<ExportProgress> {
  const c = clientOf(client);
  const init = withSignal({ params: { path: { id: runId } }, parseAs: "stream" as const }, opts.signal);
  return follow(opts, () => c.GET("/v1/exportRuns/{id}:watch", init));
}

type StreamResult = { data?: ReadableStream<Uint8Array> | null; error?: unknown; response: Response };

function withSignal<T extends object>(init: T, signal: AbortSignal | undefined): T | (T & { signal: AbortSignal }) {
  return signal ? { ...init, signal } : init;
}

/** Makes the streaming call and follows its answer; see followProgress. */
async function follow(opts: FollowOptions, call: () => Promise<StreamResult>): Promise<ExportProgress> {
  return guard(opts.signal, async () => {
    const res = await call();
    return followProgress(streamOf(res), opts, requestIdOf(res.response));
  });
}

function streamOf(res: StreamResult): ReadableStream<Uint8Array> {
  if (res.error !== undefined || !res.response.ok) throw AuditExportError.fromResponse(res.error, res.response);
  if (!res.data) throw new AuditExportError(GrpcCode.UNAVAILABLE, "progress stream has no body", { httpStatus: res.response.status });
  return res.data;
}
