import { api, unwrap } from "../api";
import type { Schemas } from "@auditexport/client";
import { announce } from "../nav";
import { h, clear, field, select, showErrors, clearErrors, table, button, busy, confirmDialog, alertBox, enumLabel, fmtTime, badge } from "../ui";

type Integration = Schemas["v1StorageIntegration"];
type Provider = Schemas["v1Provider"];

const PROVIDERS: [string, string][] = [
  ["PROVIDER_S3", "Amazon S3 (or S3-compatible)"],
  ["PROVIDER_GCS", "Google Cloud Storage"],
  ["PROVIDER_AZURE_BLOB", "Azure Blob Storage"],
  ["PROVIDER_LOCAL", "Local directory"],
];

export async function integrationsPage(main: HTMLElement): Promise<void> {
  const listBox = h("div");
  const formBox = h("div");
  const msg = h("div", { role: "status", "aria-live": "polite", class: "status" });
  const newBtn = button("New integration", () => {
    integrationForm(formBox, null, reload);
  }, { class: "primary" });
  clear(
    main,
    h("h1", null, "Storage integrations"),
    h("p", null, "Where scheduled exports are written. Changing an integration pauses its schedules unless you choose to update them."),
    h("div", { class: "actions" }, newBtn),
    msg,
    formBox,
    h("h2", null, "Integrations"),
    listBox,
  );
  async function reload(): Promise<void> {
    try {
      const { storageIntegrations = [] } = unwrap(await api.GET("/v1/storageIntegrations", { params: { query: { pageSize: 100 } } }));
      clear(
        listBox,
        table(
          "Storage integrations",
          ["Name", "Provider", "Destination", "Linked schedules", "Updated", "Actions"],
          storageIntegrations.map((it) => {
            const out = h("div", { class: "result", role: "status", "aria-live": "polite" });
            return [
              h("strong", null, it.name ?? ""),
              enumLabel(it.provider, "PROVIDER_"),
              h("code", null, it.destination ?? ""),
              String(it.linkedScheduleCount ?? 0),
              fmtTime(it.updateTime),
              h(
                "div",
                { class: "row-actions" },
                button("Test", (e) => testIntegration(e.currentTarget as HTMLButtonElement, it, out), { "aria-label": `Test ${it.name}` }),
                button("View credentials", (e) => viewCredentials(e.currentTarget as HTMLButtonElement, it, out), { "aria-label": `View credentials of ${it.name}` }),
                button("Edit", () => integrationForm(formBox, it, reload), { "aria-label": `Edit ${it.name}` }),
                button("Delete", () => deleteIntegration(it, reload, msg), { class: "danger", "aria-label": `Delete ${it.name}` }),
                out,
              ),
            ];
          }),
          { empty: "No storage integrations yet. Create one to export to it." },
        ),
      );
    } catch (err) {
      clear(listBox, alertBox(err));
    }
  }
  await reload();
}

async function testIntegration(btn: HTMLButtonElement, it: Integration, out: HTMLElement): Promise<void> {
  clear(out, "Testing…");
  try {
    const r = unwrap(await busy(btn, () => api.POST("/v1/storageIntegrations/{id}:test", { params: { path: { id: it.id ?? "" } }, body: {} })));
    if (r.ok) {
      clear(out, badge("Test succeeded", "ok"), ` wrote, read and deleted ${r.probeUri ?? ""} in ${r.latency ?? ""}.`);
    } else {
      clear(
        out,
        badge("Test failed", "bad"),
        " ",
        h("span", null, `Failed step: ${r.failedStep || "?"}. `),
        h("span", { class: "provider-msg" }, `${r.providerCode ? r.providerCode + ": " : ""}${r.providerMessage ?? ""}`),
      );
    }
    announce(r.ok ? `Test of ${it.name} succeeded.` : `Test of ${it.name} failed at step ${r.failedStep}.`);
  } catch (err) {
    clear(out, alertBox(err));
  }
}

async function viewCredentials(btn: HTMLButtonElement, it: Integration, out: HTMLElement): Promise<void> {
  try {
    const { credentials: c = {} } = unwrap(await busy(btn, () => api.GET("/v1/storageIntegrations/{id}/credentials", { params: { path: { id: it.id ?? "" } } })));
    const rows: [string, string | undefined][] = [
      ["Integration name", c.integrationName],
      ["Provider", enumLabel(c.provider, "PROVIDER_")],
      ["Credential kind", c.credentialKind],
      ["External id", c.externalId],
      ["IAM principal", c.iamPrincipal],
      ["Service account", c.serviceAccount],
      ["App name", c.appName],
      ["Consent URL", c.consentUrl],
    ];
    clear(out, h("dl", { class: "kv", "aria-label": `Credentials of ${it.name}` }, rows.filter(([, v]) => v).map(([k, v]) => [h("dt", null, k), h("dd", null, h("code", null, v ?? ""))])));
  } catch (err) {
    clear(out, alertBox(err));
  }
}

async function deleteIntegration(it: Integration, reload: () => Promise<void>, msg: HTMLElement): Promise<void> {
  const also = h("input", { type: "checkbox", name: "deleteLinked" });
  const ok = await confirmDialog(
    `Delete ${it.name}?`,
    h("p", null, `${it.linkedScheduleCount ?? 0} schedule(s) use it. Without the option below they are paused (reason: integration deleted).`),
    "Delete",
    field("Also delete linked schedules", also),
  );
  if (!ok) return;
  try {
    const r = unwrap(await api.DELETE("/v1/storageIntegrations/{id}", { params: { path: { id: it.id ?? "" }, query: { deleteLinkedSchedules: also.checked } } }));
    const text = `Deleted ${it.name}; ${r.pausedScheduleIds?.length ?? 0} schedule(s) paused, ${r.deletedScheduleIds?.length ?? 0} deleted.`;
    clear(msg, text);
    announce(text);
  } catch (err) {
    clear(msg, alertBox(err));
  }
  await reload();
  // The row (and its button) is gone: keep the keyboard focus on the outcome.
  msg.tabIndex = -1;
  msg.focus();
}

/** The create (it = null) or edit form, with credential fields per provider. */
function integrationForm(box: HTMLElement, it: Integration | null, reload: () => Promise<void>): void {
  const edit = it !== null;
  const p = "storageIntegration.";
  const name = h("input", { type: "text", required: true, value: it?.name ?? "", autocomplete: "off" });
  const provider = select(PROVIDERS, it?.provider ?? "PROVIDER_S3", { disabled: edit });
  const destination = h("input", { type: "text", required: true, value: it?.destination ?? "", autocomplete: "off" });
  const region = h("input", { type: "text", value: it?.region ?? "", autocomplete: "off" });
  const endpoint = h("input", { type: "text", value: it?.endpoint ?? "", autocomplete: "off" });
  // credentials
  const s3Kind = select([["key", "Access key"], ["role", "IAM role"]], "key");
  const akId = h("input", { type: "text", autocomplete: "off" });
  const akSecret = h("input", { type: "password", autocomplete: "new-password" });
  const roleArn = h("input", { type: "text", autocomplete: "off" });
  const gcsKey = h("textarea", { rows: 5, spellcheck: "false" });
  const azKind = select([["shared", "Shared key"], ["sas", "SAS token"]], "shared");
  const azAccount = h("input", { type: "text", autocomplete: "off" });
  const azKey = h("input", { type: "password", autocomplete: "new-password" });
  const azSas = h("input", { type: "password", autocomplete: "new-password" });
  const updateLinked = h("input", { type: "checkbox" });

  const c = p + "credentials.";
  const s3Key = h("div", null, field("Access key id", akId, { field: c + "awsAccessKey.accessKeyId" }), field("Secret access key", akSecret, { field: c + "awsAccessKey.secretAccessKey" }));
  const s3Role = h("div", null, field("Role ARN", roleArn, { field: c + "awsRole.roleArn", hint: "View credentials shows the external id and principal to trust." }));
  const s3Box = h("fieldset", null, h("legend", null, "S3 credentials"), field("Credential", s3Kind, { field: p + "credentials" }), s3Key, s3Role);
  const gcsBox = h("fieldset", null, h("legend", null, "GCS credentials"), field("Service account JSON key", gcsKey, { field: c + "gcsServiceAccount.jsonKey", hint: "Leave empty to use the server's service account (View credentials)." }));
  const azShared = h("div", null, field("Account name", azAccount, { field: c + "azureSharedKey.accountName" }), field("Account key", azKey, { field: c + "azureSharedKey.accountKey" }));
  const azSasBox = h("div", null, field("SAS token", azSas, { field: c + "azureSas.token" }));
  const azBox = h("fieldset", null, h("legend", null, "Azure credentials"), field("Credential", azKind, { field: p + "credentials" }), azShared, azSasBox);
  const regionF = field("Region", region, { field: p + "region" });
  const endpointF = field("Endpoint (optional)", endpoint, { field: p + "endpoint", hint: "For S3-compatible stores such as MinIO, e.g. http://127.0.0.1:9000; Azure: the blob service URL." });
  const destHint = () =>
    ({ PROVIDER_S3: "s3://bucket/prefix/", PROVIDER_GCS: "gs://bucket/prefix/", PROVIDER_AZURE_BLOB: "azblob://container/prefix/", PROVIDER_LOCAL: "file:///absolute/dir/" })[provider.value] ?? "";
  const destHintEl = h("span");
  function sync(): void {
    const pv = provider.value;
    s3Box.hidden = pv !== "PROVIDER_S3";
    gcsBox.hidden = pv !== "PROVIDER_GCS";
    azBox.hidden = pv !== "PROVIDER_AZURE_BLOB";
    regionF.hidden = pv !== "PROVIDER_S3";
    endpointF.hidden = pv !== "PROVIDER_S3" && pv !== "PROVIDER_AZURE_BLOB";
    s3Key.hidden = s3Kind.value !== "key";
    s3Role.hidden = s3Kind.value !== "role";
    azShared.hidden = azKind.value !== "shared";
    azSasBox.hidden = azKind.value !== "sas";
    destHintEl.textContent = `Example: ${destHint()}`;
  }
  provider.addEventListener("change", sync);
  s3Kind.addEventListener("change", sync);
  azKind.addEventListener("change", sync);

  const submit = h("button", { type: "submit", class: "primary" }, edit ? "Save changes" : "Create integration");
  const titleId = "integration-form-title";
  const form: HTMLFormElement = h(
    "form",
    { class: "card", "aria-labelledby": titleId },
    h("h2", { id: titleId }, edit ? `Edit ${it?.name}` : "New storage integration"),
    field("Name", name, { field: p + "name", hint: "Schedules refer to the integration by this name." }),
    field("Provider", provider, { field: p + "provider" }),
    field("Destination", destination, { field: p + "destination", hint: destHintEl }),
    regionF,
    endpointF,
    s3Box,
    gcsBox,
    azBox,
    edit ? h("p", { class: "hint" }, "Credentials are never shown; leave them empty to keep the stored ones.") : null,
    edit ? field("Update linked schedules instead of pausing them", updateLinked, { hint: "Without it, every schedule using this integration is paused (reason: integration updated) until resumed." }) : null,
    h("div", { class: "actions" }, submit, button("Cancel", () => clear(box))),
  );
  sync();

  function credentials(): Schemas["v1StorageCredentials"] | undefined {
    switch (provider.value as Provider) {
      case "PROVIDER_S3":
        if (s3Kind.value === "role") return roleArn.value ? { awsRole: { roleArn: roleArn.value } } : undefined;
        return akId.value || akSecret.value ? { awsAccessKey: { accessKeyId: akId.value, secretAccessKey: akSecret.value } } : undefined;
      case "PROVIDER_GCS":
        return gcsKey.value ? { gcsServiceAccount: { jsonKey: gcsKey.value } } : undefined;
      case "PROVIDER_AZURE_BLOB":
        if (azKind.value === "sas") return azSas.value ? { azureSas: { token: azSas.value } } : undefined;
        return azAccount.value || azKey.value ? { azureSharedKey: { accountName: azAccount.value, accountKey: azKey.value } } : undefined;
      default:
        return undefined;
    }
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form);
    const body: Integration = {
      name: name.value.trim(),
      provider: provider.value as Provider,
      destination: destination.value.trim(),
      region: region.value.trim(),
      endpoint: endpoint.value.trim(),
    };
    const creds = credentials();
    if (creds) body.credentials = creds;
    try {
      await busy(submit, async () => {
        if (!edit) {
          unwrap(await api.POST("/v1/storageIntegrations", { body }));
          announce(`Created integration ${body.name}.`);
        } else {
          const mask = ["name", "destination", "region", "endpoint"].filter((k) => (body as Record<string, unknown>)[k] !== ((it as Record<string, unknown>)[k] ?? ""));
          if (creds) mask.push("credentials");
          if (mask.length === 0) {
            announce("Nothing changed.");
            return;
          }
          const r = unwrap(
            await api.PATCH("/v1/storageIntegrations/{storageIntegration.id}", {
              params: { path: { "storageIntegration.id": it?.id ?? "" }, query: { updateMask: mask.join(","), updateLinkedSchedules: updateLinked.checked } },
              body,
            }),
          );
          announce(`Saved ${body.name}; ${r.pausedScheduleIds?.length ?? 0} schedule(s) paused.`);
        }
      });
      clear(box);
      await reload();
    } catch (err) {
      showErrors(form, err);
    }
  });
  clear(box, form);
  name.focus();
}
