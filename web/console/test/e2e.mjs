// End-to-end test of the console (issue 14's acceptance), run by
// integration_test/console_test.go TestConsoleBrowser against a real server and MinIO:
// playwright-core drives Debian's Chromium headless; axe-core checks every page.
import { chromium } from "playwright-core";
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const BASE = env("CONSOLE_URL");
const ADMIN_KEY = env("CONSOLE_ADMIN_KEY");
const SHOTS = env("CONSOLE_SCREENSHOTS");
const S3 = {
  endpoint: env("CONSOLE_S3_ENDPOINT"),
  slow: env("CONSOLE_S3_SLOW_ENDPOINT"),
  access: env("CONSOLE_S3_ACCESS_KEY"),
  secret: env("CONSOLE_S3_SECRET_KEY"),
  region: env("CONSOLE_S3_REGION"),
};
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const origin = new URL(BASE).origin;
const problems = [];
const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);

const browser = await chromium.launch({
  executablePath: env("CONSOLE_CHROMIUM"),
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"],
});

async function newPage(width = 1280, height = 900) {
  const ctx = await browser.newContext({ viewport: { width, height }, reducedMotion: "reduce" });
  const page = await ctx.newPage();
  page.setDefaultTimeout(45000);
  page.on("request", (r) => {
    const u = r.url();
    if (!u.startsWith("data:") && new URL(u).origin !== origin) problems.push(`request to another origin: ${u}`);
  });
  page.on("console", (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(`CSP: ${m.text()}`);
    if (m.type() === "error" && !/Failed to load resource/.test(m.text())) log("console error:", m.text());
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  return page;
}

/** axe-core on the current page: no serious or critical violation; then a screenshot. */
async function check(page, name, { idle = true } = {}) {
  if (idle) await page.waitForLoadState("networkidle").catch(() => undefined);
  const has = await page.evaluate(() => typeof window.axe !== "undefined");
  if (!has) await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5) }));
  });
  const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  for (const v of violations) log(`axe ${name}: ${v.impact} ${v.id} (${v.help}) at ${v.nodes.join(", ")}`);
  if (bad.length) problems.push(`axe ${name}: ${bad.map((v) => `${v.impact} ${v.id}: ${v.help} at ${v.nodes.join(", ")}`).join("; ")}`);
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  log(`checked ${name} (${violations.length} minor/moderate axe findings)`);
}

// firstPageShown waits for the element table's status line to say the first
// page of 25 rows is shown. The visible status line, not any text: after Apply
// the page also announces the same words in its screen-reader live region, so
// for a moment two elements hold them (a strict-mode violation in getByText).
async function firstPageShown(page) {
  await page.locator("p.status").filter({ hasText: /^Rows 1–25 of / }).waitFor();
}

async function heading(page, text) {
  await page.getByRole("heading", { level: 1, name: text }).waitFor();
}

async function signIn(page, key) {
  await page.goto(BASE + "/");
  await page.getByLabel("API key", { exact: true }).fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("navigation", { name: "Main" }).waitFor();
}

async function nav(page, label) {
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: label, exact: true }).click();
}

/** Presses Tab until the focused control is labelled `label` (at most 80 presses). */
async function tabTo(page, label) {
  for (let i = 0; i < 80; i++) {
    await page.keyboard.press("Tab");
    const name = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el) return "";
      return (el.labels?.[0]?.textContent ?? el.getAttribute("aria-label") ?? el.textContent ?? "").trim();
    });
    if (name === label) return;
  }
  throw new Error(`keyboard: Tab never reached "${label}"`);
}

async function typeInto(page, label, text) {
  await tabTo(page, label);
  await page.keyboard.press("Control+A");
  await page.keyboard.press("Delete");
  await page.keyboard.type(text);
}

async function createIntegration(page, name, endpoint, secret) {
  await page.getByRole("button", { name: "New integration" }).click();
  const form = page.getByRole("form", { name: "New storage integration" });
  await form.getByLabel("Name", { exact: true }).fill(name);
  await form.getByLabel("Provider", { exact: true }).selectOption("PROVIDER_S3");
  await form.getByLabel("Destination", { exact: true }).fill("s3://console/exports/");
  await form.getByLabel("Region", { exact: true }).fill(S3.region);
  await form.getByLabel("Endpoint (optional)", { exact: true }).fill(endpoint);
  await form.getByLabel("Access key id", { exact: true }).fill(S3.access);
  await form.getByLabel("Secret access key", { exact: true }).fill(secret);
  await form.getByRole("button", { name: "Create integration" }).click();
  await page.getByRole("button", { name: `Test ${name}`, exact: true }).waitFor();
}

/** Fills the schedule form with the mouse-free helpers of Playwright (fill), for the non-keyboard schedules. */
async function fillSchedule(page, { name, integration, uri }) {
  await page.getByLabel("Name", { exact: true }).fill(name);
  await page.getByLabel("Storage integration", { exact: true }).fill(integration);
  await page.getByLabel("Destination URI", { exact: true }).fill(uri);
  await page.getByLabel("Cron (5 fields)", { exact: true }).fill("0 3 * * *");
  await page.getByLabel("Time zone", { exact: true }).fill("UTC");
}

async function runHistoryRow(page, state) {
  const row = page.getByRole("region", { name: "Run history" }).locator("tbody tr").filter({ hasText: state }).first();
  await row.waitFor({ timeout: 120000 });
  return row;
}

async function sendNowToEnd(page) {
  await page.getByRole("button", { name: "Send now" }).click();
  await page.getByRole("heading", { name: "Send now progress" }).waitFor();
  await page.waitForFunction(() => {
    const t = document.querySelector(".progress-text")?.textContent ?? "";
    return /Phase: (Succeeded|Failed|Canceled|Skipped)/.test(t);
  }, null, { timeout: 120000 });
}

try {
  // --- sign in (admin) ------------------------------------------------------------------------
  const page = await newPage();
  await page.goto(BASE + "/");
  await heading(page, "Sign in to auditexport");
  await check(page, "signin");
  await page.getByLabel("API key", { exact: true }).fill("aek_wrong_wrongwrongwrongwrongwrongwrongwrong");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator(".form-error").waitFor();
  assert.match(await page.locator(".form-error").textContent(), /API key|authenticat/i);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, "a refused key is not kept");
  await signIn(page, ADMIN_KEY);
  await heading(page, "Storage integrations");
  assert.equal(await page.evaluate(() => localStorage.length), 0, "nothing in localStorage");
  assert.ok(!page.url().includes(ADMIN_KEY), "the key is never in a URL");
  log("signed in");

  // --- storage integrations: create, Test, View credentials -----------------------------------
  await createIntegration(page, "minio", S3.endpoint, S3.secret);
  await page.getByRole("button", { name: "Test minio", exact: true }).click();
  await page.getByText("Test succeeded").waitFor();
  await page.getByRole("button", { name: "View credentials of minio", exact: true }).click();
  await page.getByRole("definition").filter({ hasText: "minio" }).first().waitFor();
  await createIntegration(page, "minio_bad", S3.endpoint, "not-the-secret-key");
  await page.getByRole("button", { name: "Test minio_bad", exact: true }).click();
  await page.getByText("Test failed").waitFor();
  const testMsg = await page.locator(".provider-msg").first().textContent();
  assert.match(testMsg, /signature|access key/i, `Test shows the provider's message: ${testMsg}`);
  await createIntegration(page, "minio_slow", S3.slow, S3.secret);
  // A field violation appears next to the field it names.
  await page.getByRole("button", { name: "New integration" }).click();
  const f = page.getByRole("form", { name: "New storage integration" });
  await f.getByLabel("Name", { exact: true }).fill("Not A Valid Name!");
  await f.getByLabel("Destination", { exact: true }).fill("s3://console/x/");
  await f.getByRole("button", { name: "Create integration" }).click();
  await f.locator("[aria-invalid=true]").first().waitFor();
  const invalid = await f.locator("[aria-invalid=true]").evaluateAll((els) => els.map((e) => e.labels?.[0]?.textContent ?? e.id));
  log("field violations shown at", invalid.join(", "));
  await check(page, "integrations");
  await f.getByRole("button", { name: "Cancel" }).click();

  // --- connections -> explore AUDIT_LOGS, filter, save as -------------------------------------
  await nav(page, "Connections");
  await heading(page, "Connections");
  await check(page, "connections");
  await page.getByRole("link", { name: "Explore AUDIT_LOGS" }).click();
  await heading(page, "Explore AUDIT_LOGS");
  await firstPageShown(page);
  await page.getByRole("button", { name: "Add filter" }).click();
  await page.getByLabel("Filter 1 column", { exact: true }).selectOption("EVENT_STATUS");
  await page.getByLabel("Filter 1 operator", { exact: true }).selectOption("FILTER_OPERATOR_EQUALS");
  await page.getByLabel("Filter 1 value", { exact: true }).fill("FAILURE");
  await page.getByLabel("Time range (REQUEST_TIME)", { exact: true }).selectOption("604800s");
  await page.getByLabel("Sort by", { exact: true }).selectOption("REQUEST_TIME");
  await page.getByLabel("Descending", { exact: true }).check();
  await page.getByRole("button", { name: "Apply" }).click();
  await page.waitForFunction(() => /^(0 rows|Rows 1–\d+ of \d+)$/.test(document.querySelector(".status")?.textContent ?? "") && !document.querySelector("[aria-busy]"));
  const statuses = await page.evaluate(() => {
    const ths = [...document.querySelectorAll("thead th")].map((t) => t.textContent);
    const i = ths.indexOf("EVENT_STATUS");
    return [...document.querySelectorAll("tbody tr")].map((r) => r.children[i]?.textContent);
  });
  assert.ok(statuses.length > 0, "the failed sign-in above is a FAILURE row");
  assert.ok(statuses.every((s) => s === "FAILURE"), `filtered rows: ${statuses}`);
  await check(page, "explore");
  await page.getByLabel("Workbook name", { exact: true }).fill("Console audit");
  await page.getByLabel("Folder", { exact: true }).fill("ops");
  await page.getByRole("button", { name: "Save as workbook" }).click();
  await heading(page, "Console audit");
  // The saved element keeps its filter: set it back to everything for the exports.
  await page.getByRole("button", { name: "Remove filter 1" }).click();
  await page.getByLabel("Time range (REQUEST_TIME)", { exact: true }).selectOption("");
  await page.getByRole("button", { name: "Apply" }).click();
  await firstPageShown(page);
  // Rename (name and folder).
  await page.getByLabel("Name", { exact: true }).fill("Console audit log");
  await page.getByLabel("Folder", { exact: true }).fill("ops/console");
  await page.getByRole("button", { name: "Rename" }).click();
  await heading(page, "Console audit log");
  await check(page, "workbook");
  const workbookUrl = page.url();
  log("workbook saved", workbookUrl);

  await nav(page, "Workbooks");
  await heading(page, "Workbooks");
  await page.getByRole("link", { name: "Console audit" }).waitFor();
  await check(page, "workbooks");

  // --- new schedule: keyboard only, five previewed run times ----------------------------------
  await page.goto(workbookUrl);
  await heading(page, "Console audit");
  await page.getByRole("link", { name: "New schedule" }).click();
  await heading(page, "New schedule");
  await typeInto(page, "Name", "daily audit");
  await typeInto(page, "Storage integration", "minio");
  await typeInto(page, "Destination URI", "s3://console/exports/{yyyy}/{mm}/audit-{run_id}.csv");
  await typeInto(page, "Cron (5 fields)", "30 2 * * *");
  await typeInto(page, "Time zone", "Europe/Berlin");
  await page.waitForFunction(() => {
    const li = [...document.querySelectorAll("#cron-preview li")].map((l) => l.textContent);
    return li.length === 5 && li.every((t) => / 02:30:00\+0[12]:00 CES?T$/.test(t));
  });
  const preview = await page.locator("#cron-preview li").allTextContents();
  log("preview", preview.join(" | "));
  await check(page, "schedule-form");
  await tabTo(page, "Create schedule");
  await page.keyboard.press("Enter");
  await heading(page, "daily audit");
  log("schedule created with the keyboard only");

  // --- Send now to 100% and SUCCEEDED with its row count --------------------------------------
  await sendNowToEnd(page);
  assert.equal(await page.locator("progress").evaluate((p) => p.value), 100);
  assert.equal(await page.locator(".pct").textContent(), "100%");
  const okRow = await runHistoryRow(page, "Succeeded");
  const cells = await okRow.locator("td").allTextContents();
  const rows = Number(cells[3].replace(/,/g, ""));
  assert.ok(rows > 15000, `run row count ${cells[3]}`);
  assert.match(await page.locator(".progress-text").textContent(), new RegExp(`Phase: Succeeded · ${cells[3]} `));
  await check(page, "schedule");
  log("send now succeeded with", cells[3], "rows");
  await page.getByRole("button", { name: "Pause" }).click();
  await page.getByRole("definition").filter({ hasText: /^Paused$/ }).waitFor();
  await page.getByRole("definition").filter({ hasText: /^User$/ }).waitFor();
  await page.getByRole("button", { name: "Resume" }).click();
  await page.getByRole("definition").filter({ hasText: /^Active$/ }).waitFor();
  await page.getByRole("link", { name: "Edit" }).click();
  await heading(page, "Edit schedule");
  assert.equal(await page.getByLabel("Cron (5 fields)", { exact: true }).inputValue(), "30 2 * * *");
  await page.locator("#cron-preview li").nth(4).waitFor();
  await check(page, "schedule-edit");
  await page.getByRole("link", { name: "Cancel" }).click();
  await heading(page, "daily audit");
  log("pause, resume and the edit form work");

  // --- wrong credentials: the provider's error in the run history ------------------------------
  await page.goto(workbookUrl);
  await page.getByRole("link", { name: "New schedule" }).click();
  await heading(page, "New schedule");
  await fillSchedule(page, { name: "bad credentials", integration: "minio_bad", uri: "s3://console/exports/bad-{run_id}.csv" });
  await page.getByLabel("Cron (5 fields)", { exact: true }).fill("0 25 * * *");
  await page.getByRole("button", { name: "Create schedule" }).click();
  const cronField = page.getByLabel("Cron (5 fields)", { exact: true });
  await page.waitForFunction(() => document.activeElement?.getAttribute("aria-invalid") === "true");
  assert.equal(await cronField.getAttribute("aria-invalid"), "true", "the cron violation is shown at the cron field");
  const cronErr = await page.locator(`#${await cronField.getAttribute("id")}-error`).textContent();
  assert.ok(cronErr.length > 0, "cron error text");
  log("cron violation at its field:", cronErr);
  await cronField.fill("0 3 * * *");
  await page.getByRole("button", { name: "Create schedule" }).click();
  await heading(page, "bad credentials");
  await sendNowToEnd(page);
  const badRow = await runHistoryRow(page, "Failed");
  const provider = await badRow.locator(".provider-msg").textContent();
  assert.match(provider, /^Provider: .*(signature|access key)/i, `provider message in the run history: ${provider}`);
  await check(page, "run-failed");
  log("failed run shows", provider);

  // --- reload during a long Send now: the bar continues (WatchExportRun) ------------------------
  await page.goto(workbookUrl);
  await page.getByRole("link", { name: "New schedule" }).click();
  await heading(page, "New schedule");
  await fillSchedule(page, { name: "slow export", integration: "minio_slow", uri: "s3://console/exports/slow-{run_id}.csv" });
  await page.getByRole("button", { name: "Create schedule" }).click();
  await heading(page, "slow export");
  await page.getByRole("button", { name: "Send now" }).click();
  await page.waitForFunction(() => /Phase: (Querying|Uploading)/.test(document.querySelector(".progress-text")?.textContent ?? ""));
  const before = await page.locator(".progress-text").textContent();
  log("before reload:", before);
  await page.reload();
  await heading(page, "slow export");
  await page.waitForFunction(() => /Phase: (Querying|Uploading|Finalizing)/.test(document.querySelector(".progress-text")?.textContent ?? ""), null, { timeout: 60000 });
  const after = await page.locator(".progress-text").textContent();
  log("after reload:", after);
  await check(page, "send-now-progress", { idle: false });
  await page.waitForFunction(() => /Phase: Succeeded/.test(document.querySelector(".progress-text")?.textContent ?? ""), null, { timeout: 180000 });
  assert.equal(await page.locator(".pct").textContent(), "100%");
  await runHistoryRow(page, "Succeeded");
  log("slow run reattached after reload and succeeded");
  await page.getByRole("button", { name: "Send now" }).click();
  await page.waitForFunction(() => /Phase: (Querying|Uploading)/.test(document.querySelector(".progress-text")?.textContent ?? ""));
  await page.getByRole("button", { name: "Cancel run", exact: true }).click();
  await page.waitForFunction(() => /Phase: Canceled/.test(document.querySelector(".progress-text")?.textContent ?? ""), null, { timeout: 60000 });
  await runHistoryRow(page, "Canceled");
  log("a running Send now was canceled");

  // --- editing an integration pauses its schedules, unless they are updated -------------------
  await nav(page, "Storage integrations");
  await heading(page, "Storage integrations");
  await page.getByRole("button", { name: "Edit minio", exact: true }).click();
  let ef = page.getByRole("form", { name: "Edit minio", exact: true });
  await ef.getByLabel("Region", { exact: true }).fill("eu-west-1");
  await ef.getByRole("button", { name: "Save changes" }).click();
  await page.getByText("Saved minio; 1 schedule(s) paused.").first().waitFor();
  await page.getByRole("button", { name: "Edit minio_slow", exact: true }).click();
  ef = page.getByRole("form", { name: "Edit minio_slow", exact: true });
  await ef.getByLabel("Region", { exact: true }).fill("eu-west-1");
  await ef.getByLabel("Update linked schedules instead of pausing them", { exact: true }).check();
  await ef.getByRole("button", { name: "Save changes" }).click();
  await page.getByText("Saved minio_slow; 0 schedule(s) paused.").first().waitFor();

  // --- schedules (admin: all) -----------------------------------------------------------------
  await nav(page, "Schedules");
  await heading(page, "All schedules");
  await page.getByRole("link", { name: "slow export" }).waitFor();
  const states = Object.fromEntries(
    await page.locator("tbody tr").evaluateAll((rows) => rows.map((r) => [r.children[0].textContent, `${r.children[1].textContent}/${r.children[2].textContent}`])),
  );
  assert.equal(states["daily audit"], "Paused/Integration updated", JSON.stringify(states));
  assert.equal(states["slow export"], "Active/—", JSON.stringify(states));
  await check(page, "schedules");

  // --- users & API keys: a VIEWER and a key (shown once) --------------------------------------
  await nav(page, "Users & API keys");
  await heading(page, "Users & API keys");
  await page.getByLabel("E-mail", { exact: true }).fill("viewer@example.com");
  await page.getByLabel("Account type", { exact: true }).selectOption("ACCOUNT_TYPE_VIEWER");
  await page.getByRole("button", { name: "Create user" }).click();
  await page.getByRole("region", { name: "Users" }).getByText("viewer@example.com").waitFor();
  // Grant the viewer the Audit Logs connection (checked again below from the viewer's side).
  await page.getByLabel("Audit Logs access for viewer@example.com").check();
  await page.getByText("Granted Audit Logs access for viewer@example.com.").first().waitFor();
  await page.getByLabel("User", { exact: true }).selectOption({ label: "viewer@example.com" });
  await page.getByLabel("Key name", { exact: true }).fill("viewer key");
  await page.getByRole("button", { name: "Create API key" }).click();
  const secret = await page.getByLabel("New API key secret", { exact: true }).inputValue();
  assert.match(secret, /^aek_/);
  await page.getByRole("region", { name: "API keys" }).getByText("viewer key").waitFor();
  await page.getByLabel("User", { exact: true }).selectOption({ label: "admin@example.com" });
  await page.getByRole("region", { name: "API keys" }).locator("tbody tr").first().waitFor();
  await check(page, "users");

  // --- audit log, newest first, filtered ------------------------------------------------------
  await nav(page, "Audit log");
  await heading(page, "Audit log");
  await firstPageShown(page);
  await page.getByRole("button", { name: "Add filter" }).click();
  await page.getByLabel("Filter 1 column", { exact: true }).selectOption("EVENT_TYPE");
  await page.getByLabel("Filter 1 value", { exact: true }).fill("SEND_NOW");
  await page.getByRole("button", { name: "Apply" }).click();
  await page.waitForFunction(() => {
    const ths = [...document.querySelectorAll("thead th")].map((t) => t.textContent);
    const i = ths.indexOf("EVENT_TYPE");
    const rows = [...document.querySelectorAll("tbody tr")];
    return rows.length >= 1 && rows.every((r) => r.children[i]?.textContent === "SEND_NOW");
  });
  await check(page, "audit-log");

  // --- delete an integration with its linked schedules ---------------------------------------
  await nav(page, "Storage integrations");
  await heading(page, "Storage integrations");
  await page.getByRole("button", { name: "Delete minio_bad", exact: true }).click();
  const dlg = page.getByRole("dialog", { name: "Delete minio_bad?" });
  await dlg.getByLabel("Also delete linked schedules").check();
  await check(page, "integration-delete-dialog", { idle: false });
  await dlg.getByRole("button", { name: "Delete" }).click();
  await page.getByRole("button", { name: "Delete minio_bad", exact: true }).waitFor({ state: "detached" });
  await nav(page, "Schedules");
  await page.getByRole("link", { name: "slow export" }).waitFor();
  assert.equal(await page.getByRole("link", { name: "bad credentials" }).count(), 0, "the linked schedule was deleted");
  await page.goto(BASE + "/no/such/page");
  await heading(page, "Page not found");
  await check(page, "not-found");

  // --- sign out -------------------------------------------------------------------------------
  await page.getByRole("button", { name: "Sign out" }).click();
  await heading(page, "Sign in to auditexport");
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, "signing out forgets the key");

  // --- 390 px wide ----------------------------------------------------------------------------
  const narrow = await newPage(390, 844);
  await signIn(narrow, ADMIN_KEY);
  for (const [path, name, h1] of [["/integrations", "integrations-390", "Storage integrations"], [new URL(workbookUrl).pathname, "workbook-390", "Console audit"], ["/schedules", "schedules-390", "All schedules"]]) {
    await narrow.goto(BASE + path);
    await heading(narrow, h1);
    const overflow = await narrow.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `${path} at 390 px overflows by ${overflow}px`);
    await check(narrow, name);
  }

  // --- a VIEWER: no admin pages, a readable refusal on a typed URL ----------------------------
  const viewer = await newPage();
  await signIn(viewer, secret);
  const links = await viewer.getByRole("navigation", { name: "Main" }).getByRole("link").allTextContents();
  assert.ok(!links.includes("Storage integrations") && !links.includes("Users & API keys"), `viewer nav: ${links}`);
  for (const [path, title] of [["/integrations", "Storage integrations"], ["/users", "Users & API keys"]]) {
    await viewer.goto(BASE + path);
    await heading(viewer, title);
    const alert = await viewer.getByRole("alert").textContent();
    assert.match(alert, /for administrators.*viewer@example\.com.*Viewer/s, alert);
  }
  await check(viewer, "viewer-refused");
  log("viewer refused admin pages");
  // A VIEWER may not explore tables (the API's rule): the audit log page says so readably.
  await nav(viewer, "Audit log");
  await heading(viewer, "Audit log");
  assert.match(await viewer.getByRole("alert").textContent(), /\(Viewer\) may not explore tables/);
  // With the grant, the viewer reads saved workbooks over AUDIT_LOGS.
  await viewer.goto(workbookUrl);
  await heading(viewer, "Console audit log");
  await firstPageShown(viewer);
  await check(viewer, "viewer-workbook");
  log("viewer reads a saved workbook");
} catch (err) {
  problems.push(String(err?.stack ?? err));
} finally {
  await browser.close();
}
if (problems.length) {
  console.error("FAILED:\n- " + problems.join("\n- "));
  process.exit(1);
}
log("all console checks passed");
