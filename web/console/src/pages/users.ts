import { api, unwrap, AUDIT_LOGS_CONNECTION, session, type User } from "../api";
import { announce } from "../nav";
import { h, clear, field, select, showErrors, table, button, busy, alertBox, fmtTime, enumLabel, errorMessage } from "../ui";

const TYPES: [string, string][] = [["ACCOUNT_TYPE_ADMIN", "Admin"], ["ACCOUNT_TYPE_CREATOR", "Creator"], ["ACCOUNT_TYPE_VIEWER", "Viewer"]];

export async function usersPage(main: HTMLElement): Promise<void> {
  const usersBox = h("div");
  const keysBox = h("div");
  const msg = h("div", { role: "status", "aria-live": "polite", class: "status" });
  const secretBox = h("div");
  let users: User[] = [];

  // create user
  const email = h("input", { type: "email", required: true, autocomplete: "off" });
  const type = select(TYPES, "ACCOUNT_TYPE_VIEWER");
  const addUser = h("button", { type: "submit", class: "primary" }, "Create user");
  const userForm: HTMLFormElement = h(
    "form",
    { class: "card", "aria-labelledby": "new-user-h" },
    h("h2", { id: "new-user-h" }, "New user"),
    h("div", { class: "row" }, field("E-mail", email, { field: "user.email" }), field("Account type", type, { field: "user.accountType" })),
    h("div", { class: "actions" }, addUser),
  );
  userForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = unwrap(await busy(addUser, () => api.POST("/v1/users", { body: { email: email.value.trim(), accountType: type.value as User["accountType"] } })));
      announce(`Created user ${r.user?.email}.`);
      email.value = "";
      await reload();
    } catch (err) {
      showErrors(userForm, err);
    }
  });

  // create key (and the user whose keys are listed)
  const keyUser = h("select");
  keyUser.addEventListener("change", () => void reloadKeys());
  const keyName = h("input", { type: "text", required: true, autocomplete: "off" });
  const addKey = h("button", { type: "submit", class: "primary" }, "Create API key");
  const keyForm: HTMLFormElement = h(
    "form",
    { class: "card", "aria-labelledby": "new-key-h" },
    h("h2", { id: "new-key-h" }, "New API key"),
    h("div", { class: "row" }, field("User", keyUser, { field: "userId" }), field("Key name", keyName, { field: "name" })),
    h("div", { class: "actions" }, addKey),
    secretBox,
  );
  keyForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = unwrap(await busy(addKey, () => api.POST("/v1/apiKeys", { body: { userId: keyUser.value, name: keyName.value.trim() } })));
      const secretId = "new-secret";
      clear(
        secretBox,
        h(
          "div",
          { class: "secret", role: "alert" },
          h("p", null, h("strong", null, "Copy this key now: it is shown only once."), ` Key ${r.apiKey?.name} (${r.apiKey?.prefix}) for ${users.find((u) => u.id === r.apiKey?.userId)?.email ?? r.apiKey?.userId}:`),
          h("input", { type: "text", readonly: true, value: r.secret ?? "", id: secretId, "aria-label": "New API key secret", class: "secret-value" }),
        ),
      );
      (secretBox.querySelector("input") as HTMLInputElement).select();
      keyName.value = "";
      await reloadKeys();
    } catch (err) {
      showErrors(keyForm, err);
    }
  });

  clear(
    main,
    h("h1", null, "Users & API keys"),
    msg,
    h("h2", null, "Users"), usersBox,
    userForm,
    keyForm,
    h("h2", null, "API keys of the selected user"),
    keysBox,
  );

  async function setType(u: User, value: string, sel: HTMLSelectElement): Promise<void> {
    try {
      unwrap(await api.PATCH("/v1/users/{user.id}", { params: { path: { "user.id": u.id ?? "" }, query: { updateMask: "account_type" } }, body: { accountType: value as User["accountType"] } }));
      const text = `${u.email} is now ${enumLabel(value, "ACCOUNT_TYPE_")}.`;
      clear(msg, text);
      announce(text);
    } catch (err) {
      sel.value = u.accountType ?? "";
      clear(msg, alertBox(err));
    }
  }
  async function setGrant(u: User, on: boolean, box: HTMLInputElement): Promise<void> {
    try {
      if (on) unwrap(await api.POST("/v1/connections/{connectionId}:grant", { params: { path: { connectionId: AUDIT_LOGS_CONNECTION } }, body: { userId: u.id ?? "" } }));
      else unwrap(await api.POST("/v1/connections/{connectionId}:revoke", { params: { path: { connectionId: AUDIT_LOGS_CONNECTION } }, body: { userId: u.id ?? "" } }));
      const text = `${on ? "Granted" : "Revoked"} Audit Logs access for ${u.email}.`;
      clear(msg, text);
      announce(text);
    } catch (err) {
      box.checked = !on;
      clear(msg, alertBox(err));
    }
  }

  async function reload(): Promise<void> {
    try {
      users = unwrap(await api.GET("/v1/users", { params: { query: { pageSize: 100 } } })).users ?? [];
      clear(
        usersBox,
        table(
          "Users",
          ["E-mail", "Account type", "Active", "Audit Logs access", "Created"],
          users.map((u) => {
            const sel = select(TYPES, u.accountType ?? "", { "aria-label": `Account type of ${u.email}`, disabled: u.id === session.user?.id });
            sel.addEventListener("change", () => void setType(u, sel.value, sel));
            const grant = h("input", { type: "checkbox", checked: (u.connectionGrants ?? []).includes(AUDIT_LOGS_CONNECTION), "aria-label": `Audit Logs access for ${u.email}` });
            grant.addEventListener("change", () => void setGrant(u, grant.checked, grant));
            return [u.email ?? "", sel, u.active ? "yes" : "no", grant, fmtTime(u.createTime)];
          }),
        ),
      );
      const cur = keyUser.value || session.user?.id || "";
      clear(keyUser, users.map((u) => h("option", { value: u.id ?? "" }, u.email ?? "")));
      keyUser.value = cur;
    } catch (err) {
      clear(usersBox, alertBox(err));
    }
  }
  async function reloadKeys(): Promise<void> {
    try {
      const query: { pageSize: number; userId?: string } = { pageSize: 100 };
      if (keyUser.value) query.userId = keyUser.value;
      const { apiKeys = [] } = unwrap(await api.GET("/v1/apiKeys", { params: { query } }));
      clear(
        keysBox,
        table(
          "API keys",
          ["Name", "Prefix", "User", "Created", "Last used", "Revoked", "Actions"],
          apiKeys.map((k) => [
            k.name ?? "",
            h("code", null, k.prefix ?? ""),
            users.find((u) => u.id === k.userId)?.email ?? k.userId ?? "",
            fmtTime(k.createTime),
            fmtTime(k.lastUsedTime),
            fmtTime(k.revokeTime),
            k.revokeTime && !k.revokeTime.startsWith("1970") ? "" : button("Revoke", async () => {
              try {
                unwrap(await api.POST("/v1/apiKeys/{id}:revoke", { params: { path: { id: k.id ?? "" } }, body: {} }));
                announce(`Revoked ${k.name}.`);
              } catch (err) {
                clear(msg, h("div", { class: "alert", role: "alert" }, errorMessage(err)));
              }
              await reloadKeys();
            }, { class: "danger", "aria-label": `Revoke key ${k.name}` }),
          ]),
          { empty: "This user has no API keys." },
        ),
      );
    } catch (err) {
      clear(keysBox, alertBox(err));
    }
  }
  await reload();
  await reloadKeys();
}
