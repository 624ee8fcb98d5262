import { integrationsPage } from "./integrations";
import { connectionsPage, explorePage, workbooksPage, workbookPage, auditLogPage } from "./workbooks";
import { schedulesPage, schedulePage, scheduleFormPage } from "./schedules";
import { usersPage } from "./users";

export interface Page {
  re: RegExp;
  title: string;
  admin?: boolean;
  render: (main: HTMLElement, params: string[], query: URLSearchParams) => Promise<void>;
}

export const routes: Page[] = [
  { re: /^\/integrations$/, title: "Storage integrations", admin: true, render: integrationsPage },
  { re: /^\/connections$/, title: "Connections", render: connectionsPage },
  { re: /^\/connections\/([^/]+)\/tables\/([^/]+)$/, title: "Explore", render: explorePage },
  { re: /^\/workbooks$/, title: "Workbooks", render: workbooksPage },
  { re: /^\/workbooks\/([^/]+)$/, title: "Workbook", render: workbookPage },
  { re: /^\/workbooks\/([^/]+)\/schedules\/new$/, title: "New schedule", render: (m, p) => scheduleFormPage(m, p, "new") },
  { re: /^\/schedules$/, title: "Schedules", render: schedulesPage },
  { re: /^\/schedules\/([^/]+)$/, title: "Schedule", render: schedulePage },
  { re: /^\/schedules\/([^/]+)\/edit$/, title: "Edit schedule", render: (m, p) => scheduleFormPage(m, p, "edit") },
  { re: /^\/users$/, title: "Users & API keys", admin: true, render: usersPage },
  { re: /^\/audit-log$/, title: "Audit log", render: auditLogPage },
];
