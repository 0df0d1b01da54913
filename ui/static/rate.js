// The Rate tab's keyboard: 1 = A, 2 = B, 3 = tie, 4 = both bad, e = write a corrected answer, Esc leaves a box.
// The reveal of the last vote is a banner above the pair: hidden the moment the next verdict is given, shown
// again when the server sends the next reveal (each one names its vote, so its text always changes).
if (!window.__tuneloopRateKeys) {
  window.__tuneloopRateKeys = true;
  const style = document.createElement("style");
  style.textContent = "#rate-reveal p {background:#eef6ee;border:1px solid #9cc79c;border-radius:8px;" +
    "padding:8px 12px;margin:0} #rate-reveal.rate-reveal-stale {visibility:hidden}";
  document.head.appendChild(style);
  const verdicts = "#rate-a, #rate-b, #rate-tie, #rate-bad";
  document.addEventListener("click", (ev) => {
    const reveal = document.getElementById("rate-reveal");
    if (!reveal || !ev.target.closest || !ev.target.closest(verdicts)) return;
    if (!reveal.textContent.includes("\u2705")) return;    // a refusal stays in view: it may come back word for word
    reveal.classList.add("rate-reveal-stale");
    reveal.dataset.staleText = reveal.textContent;
    if (!reveal.__tuneloopWatched) {
      reveal.__tuneloopWatched = true;
      new MutationObserver(() => {
        if (reveal.textContent !== reveal.dataset.staleText) reveal.classList.remove("rate-reveal-stale");
      }).observe(reveal, {childList: true, subtree: true, characterData: true});
    }
  }, true);
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
