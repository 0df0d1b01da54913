/* The Review tab's keyboard shortcuts and help overlay (curation/ui/review.py lists them in SHORTCUTS). */
(() => {
  // The keymap and the number of label slots come from the help overlay the tab renders (review.py SHORTCUTS).
  const settings = () => {
    const h = document.getElementById("review-help");
    return h ? {keys: JSON.parse(h.dataset.keymap || "{}"), maxFields: Number(h.dataset.maxFields || 0)}
             : {keys: {}, maxFields: 0};
  };
  let activeField = 0;
  const visible = (el) => el && el.offsetParent !== null;
  const byId = (id) => document.getElementById(id);
  const help = () => byId("review-help");
  window.tuneloopReviewHelp = () => { const h = help(); if (h) h.classList.toggle("open"); };
  const click = (id) => { const el = byId(id); if (!visible(el)) return false; el.click(); return true; };
  const focus = (id) => {
    const el = byId(id); const box = el && el.querySelector("textarea, input");
    if (visible(box)) { box.focus(); return true; } return false;
  };
  const fields = () => {
    const out = [];
    for (let i = 0; i < settings().maxFields; i++) {
      for (const kind of ["single", "multi", "tags"]) {
        const el = byId(`review-field-${i}-${kind}`);
        if (visible(el)) out.push({el, kind});
      }
    }
    return out;
  };
  const markActive = () => {
    const all = fields();
    if (activeField >= all.length) activeField = 0;
    document.querySelectorAll(".review-active-field").forEach((el) => el.classList.remove("review-active-field"));
    if (all[activeField]) all[activeField].el.classList.add("review-active-field");
    return all[activeField];
  };
  const openList = (id) => {
    const input = byId(id) && byId(id).querySelector("input");
    if (visible(input)) { input.focus(); input.click(); }
  };
  document.addEventListener("keydown", (e) => {
    const root = byId("review-root");
    if (!visible(root)) return;
    const t = e.target;
    const typing = t && (t.tagName === "TEXTAREA" || t.isContentEditable ||
      (t.tagName === "INPUT" && !["radio", "checkbox", "button"].includes(t.type)));
    if (e.key === "Escape") {
      if (help() && help().classList.contains("open")) help().classList.remove("open");
      else if (typing) t.blur();
      else click("review-commit-cancel") || click("review-bulk-cancel");
      return;
    }
    if (typing) {
      if ((e.ctrlKey || e.metaKey) && e.key === "Enter" && byId("review-comment") && byId("review-comment").contains(t)) {
        e.preventDefault(); click("review-comment-btn");
      }
      return;
    }
    if ((e.ctrlKey || e.metaKey) && e.key === "z") { e.preventDefault(); click("review-undo"); return; }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "?") { e.preventDefault(); window.tuneloopReviewHelp(); return; }
    if (e.key === "Enter") {
      if (click("review-commit-confirm") || click("review-bulk-confirm")) e.preventDefault();
      return;
    }
    if (/^[0-9]$/.test(e.key)) {
      const f = markActive();
      if (!f) return;
      e.preventDefault();
      if (f.kind === "tags") { f.el.querySelector("textarea, input").focus(); return; }
      const n = e.key === "0" ? 9 : Number(e.key) - 1;
      const inputs = f.el.querySelectorAll(f.kind === "single" ? "input[type=radio]" : "input[type=checkbox]");
      if (inputs[n]) inputs[n].click();
      return;
    }
    if (e.key === "f") {
      e.preventDefault(); activeField += 1;
      const f = markActive();
      if (f && f.kind === "tags") f.el.querySelector("textarea, input").focus();
      return;
    }
    const action = settings().keys[e.key];
    if (!action) return;
    e.preventDefault();
    if (action[0] === "click") click(action[1]);
    else if (action[0] === "focus") focus(action[1]);
    else if (action[0] === "open") openList(action[1]);
    setTimeout(markActive, 600);
  });
})();
