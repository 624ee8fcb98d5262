import type { components } from "./schema.js";

/** google.rpc.Status as the REST gateway sends it (error bodies and stream error lines). */
export type Status = components["schemas"]["rpcStatus"];
/** google.protobuf.Any in JSON form: {"@type": "type.googleapis.com/...", ...fields}. */
export type AnyDetail = components["schemas"]["protobufAny"];

/** gRPC status codes (google.rpc.Code). */
export const GrpcCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcCodeName = keyof typeof GrpcCode;

const codeNames = new Map<number, GrpcCodeName>(
  (Object.entries(GrpcCode) as [GrpcCodeName, number][]).map(([name, code]) => [code, name]),
);

/** The gRPC code a gateway would answer with a given HTTP status (for bodies that are not a Status). */
function codeForHttpStatus(status: number): number {
  switch (status) {
    case 400:
      return GrpcCode.INVALID_ARGUMENT;
    case 401:
      return GrpcCode.UNAUTHENTICATED;
    case 403:
      return GrpcCode.PERMISSION_DENIED;
    case 404:
      return GrpcCode.NOT_FOUND;
    case 409:
      return GrpcCode.ABORTED;
    case 412:
      return GrpcCode.FAILED_PRECONDITION;
    case 429:
      return GrpcCode.RESOURCE_EXHAUSTED;
    case 499:
      return GrpcCode.CANCELLED;
    case 501:
      return GrpcCode.UNIMPLEMENTED;
    case 503:
      return GrpcCode.UNAVAILABLE;
    case 504:
      return GrpcCode.DEADLINE_EXCEEDED;
    case 500:
      return GrpcCode.INTERNAL;
    default:
      return GrpcCode.UNKNOWN;
  }
}

export const ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo";
export const BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest";
export const REQUEST_INFO_TYPE = "type.googleapis.com/google.rpc.RequestInfo";

/** google.rpc.ErrorInfo: a stable machine-readable reason. */
export interface ErrorInfo {
  reason: string;
  domain: string;
  metadata: Record<string, string>;
}

/** One google.rpc.BadRequest.FieldViolation: `field` is a path such as "schedule.cron". */
export interface FieldViolation {
  field: string;
  description: string;
  reason?: string;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

/** isStatus reports whether v looks like a google.rpc.Status JSON object. */
export function isStatus(v: unknown): v is Status {
  return isRecord(v) && (typeof v["code"] === "number" || typeof v["message"] === "string");
}

/**
 * AuditExportError is every failure the client reports: a non-2xx gateway answer, an
 * error line in a progress stream, a broken stream or a network failure. `code` is the
 * gRPC code; `reason` and `fieldViolations` come from the Status details.
 */
export class AuditExportError extends Error {
  override readonly name = "AuditExportError";
  /** gRPC status code (see GrpcCode). */
  readonly code: number;
  /** The code's name, e.g. "INVALID_ARGUMENT". */
  readonly codeName: GrpcCodeName | "UNKNOWN";
  /** HTTP status of the answer, when the error came from an HTTP response (not a stream line). */
  readonly httpStatus: number | undefined;
  /** The Status details as sent (google.protobuf.Any JSON objects). */
  readonly details: AnyDetail[];
  /** The google.rpc.ErrorInfo detail, if any. */
  readonly errorInfo: ErrorInfo | undefined;
  /** All google.rpc.BadRequest field violations. */
  readonly fieldViolations: FieldViolation[];
  /**
   * The request id the server logged the call under (google.rpc.RequestInfo detail, else the
   * answer's X-Request-Id header), for matching an error with the server's log.
   */
  readonly requestId: string | undefined;

  constructor(
    code: number,
    message: string,
    opts: { details?: AnyDetail[]; httpStatus?: number; cause?: unknown; requestId?: string | undefined } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.codeName = codeNames.get(code) ?? "UNKNOWN";
    this.httpStatus = opts.httpStatus;
    this.details = opts.details ?? [];
    let errorInfo: ErrorInfo | undefined;
    let requestId: string | undefined;
    const violations: FieldViolation[] = [];
    for (const d of this.details) {
      switch (d["@type"]) {
        case ERROR_INFO_TYPE:
          errorInfo ??= {
            reason: str(d["reason"]),
            domain: str(d["domain"]),
            metadata: isRecord(d["metadata"])
              ? Object.fromEntries(Object.entries(d["metadata"]).map(([k, v]) => [k, str(v)]))
              : {},
          };
          break;
        case BAD_REQUEST_TYPE: {
          const fv = d["fieldViolations"];
          if (Array.isArray(fv)) {
            for (const v of fv) {
              if (!isRecord(v)) continue;
              const violation: FieldViolation = { field: str(v["field"]), description: str(v["description"]) };
              if (typeof v["reason"] === "string" && v["reason"] !== "") violation.reason = v["reason"];
              violations.push(violation);
            }
          }
          break;
        }
        case REQUEST_INFO_TYPE:
          requestId ??= str(d["requestId"]) || undefined;
          break;
      }
    }
    this.errorInfo = errorInfo;
    this.fieldViolations = violations;
    this.requestId = requestId ?? (opts.requestId || undefined);
  }

  /** The ErrorInfo reason, e.g. "SCHEDULE_NOT_FOUND", or undefined. */
  get reason(): string | undefined {
    return this.errorInfo?.reason;
  }

  /** The first violation of `field` (exact path, e.g. "schedule.cron"), or undefined. */
  fieldViolation(field: string): FieldViolation | undefined {
    return this.fieldViolations.find((v) => v.field === field);
  }

  /** Builds the error from a google.rpc.Status (a stream error line or an error body). */
  static fromStatus(status: Status, httpStatus?: number, requestId?: string): AuditExportError {
    const code = typeof status.code === "number" ? status.code : GrpcCode.UNKNOWN;
    const opts: { details: AnyDetail[]; httpStatus?: number; requestId?: string } = { details: status.details ?? [] };
    if (httpStatus !== undefined) opts.httpStatus = httpStatus;
    if (requestId !== undefined) opts.requestId = requestId;
    return new AuditExportError(code, status.message ?? "", opts);
  }

  /**
   * Builds the error from a failed HTTP answer: `body` is what openapi-fetch parsed
   * (a Status object, {"error": Status} from a streaming method, or text when the body
   * was not JSON).
   */
  static fromResponse(body: unknown, response: Response): AuditExportError {
    const requestId = requestIdOf(response);
    // Streaming methods that fail before their first message answer {"error": Status}.
    if (isRecord(body) && isStatus(body["error"])) return AuditExportError.fromStatus(body["error"], response.status, requestId);
    if (isStatus(body)) return AuditExportError.fromStatus(body, response.status, requestId);
    const text = typeof body === "string" ? body.trim() : "";
    const message = `HTTP ${response.status} ${response.statusText}`.trim() + (text ? `: ${text.slice(0, 500)}` : "");
    return new AuditExportError(codeForHttpStatus(response.status), message, { httpStatus: response.status, requestId });
  }
}

/**
 * The answer's X-Request-Id header, or undefined. (Browsers on another origin can read it
 * because the server lists it in Access-Control-Expose-Headers.)
 */
export function requestIdOf(response: Response | undefined): string | undefined {
  return response?.headers?.get("x-request-id") || undefined;
}
