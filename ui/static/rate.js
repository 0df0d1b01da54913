// The Rate tab's keyboard: 1 = A, 2 = B, 3 = tie, 4 = both bad, e = write a corrected answer, Esc leaves a box.
if (!window.__tuneloopRateKeys) {
  window.__tuneloopRateKeys = true;
  const ids = {"1": "rate-a", "2": "rate-b", "3": "rate-tie", "4": "rate-bad", "e": "rate-edit"};
  const shown = (el) => el && el.offsetParent !== null;
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    const typing = t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" || t.isContentEditable);
    if (typing) { if (ev.key === "Escape") t.blur(); return; }
    if (ev.ctrlKey || ev.metaKey || ev.altKey || !ids[ev.key]) return;
    const host = document.getElementById(ids[ev.key]);
    const button = host && (host.tagName === "BUTTON" ? host : host.querySelector("button"));
    if (!shown(button) || button.disabled) return;
    ev.preventDefault();
    button.click();
    if (ev.key === "e") {
      // the box appears after the server's reply; wait for it, then type straight into it
      let tries = 0;
      const focusBox = () => {
        const box = document.querySelector("#rate-correction textarea");
        if (shown(box)) box.focus(); else if (tries++ < 40) setTimeout(focusBox, 50);
      };
      focusBox();
    }
  });
}
