// The API: clients/ts (openapi-fetch over the generated types), with the key kept in
// sessionStorage only (never in a URL or localStorage).
import { createAuditExportClient, unwrap, type AuditExportClient, type Schemas } from "@auditexport/client";

const KEY = "auditexport.apiKey";

export function apiKey(): string {
  return sessionStorage.getItem(KEY) ?? "";
}
export function setApiKey(k: string): void {
  sessionStorage.setItem(KEY, k);
}
export function clearSession(): void {
  sessionStorage.clear();
}

export const api: AuditExportClient = createAuditExportClient({ baseUrl: window.location.origin, apiKey });
export { unwrap };

export type User = Schemas["v1User"];
export type Element = Schemas["v1Element"];
export type Filter = Schemas["v1Filter"];
export type Column = Schemas["v1Column"];
export type ApiKey = Schemas["v1ApiKey"];

/** The signed-in user (set by main after GetCurrentUser). */
export const session: { user: User | null } = { user: null };

export function isAdmin(): boolean {
  return session.user?.accountType === "ACCOUNT_TYPE_ADMIN";
}

export const AUDIT_LOGS_CONNECTION = "con_audit_logs";
