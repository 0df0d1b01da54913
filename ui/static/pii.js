// The PII tab's keyboard; the keys come from the line under its review buttons (curation/ui/pii.py SHORTCUTS):
// a = accept, r = reject, e = edit the scrubbed message, j / k = next / previous record, Esc leaves a box.
if (!window.__tuneloopPiiKeys) {
  window.__tuneloopPiiKeys = true;
  const byId = (id) => document.getElementById(id);
  const shown = (el) => el && el.offsetParent !== null;
  const keymap = () => { const h = byId("pii-keys"); return h ? JSON.parse(h.dataset.keymap || "{}") : {}; };
  document.addEventListener("keydown", (ev) => {
    if (!shown(byId("pii-keys"))) return;
    const t = ev.target;
    const typing = t && (t.tagName === "TEXTAREA" || t.isContentEditable ||
      (t.tagName === "INPUT" && !["radio", "checkbox", "button"].includes(t.type)));
    if (typing) { if (ev.key === "Escape") t.blur(); return; }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const action = keymap()[ev.key];
    if (!action) return;
    const host = byId(action[1]);
    if (action[0] === "click") {
      const button = host && (host.tagName === "BUTTON" ? host : host.querySelector("button"));
      if (!shown(button) || button.disabled) return;
      ev.preventDefault();
      button.click();
    } else {
      const box = host && host.querySelector("textarea, input");
      if (!shown(box)) return;
      ev.preventDefault();
      box.focus();
    }
  });
}
