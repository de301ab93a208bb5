// The worklist's small helpers: "select all routine samples", and the live refresh.
//
// Live refresh: every data-refresh seconds the list and the critical-value banner are
// asked again from data-url (the same filters, part=live) and swapped in without a
// reload. Nothing is asked while the person is busy: a sample is selected, a field has
// the focus, text is selected, or the tab is hidden. A 401 (the session has ended)
// reloads the page, which then goes to the login page. data-polls and data-skipped
// count what happened (the browser tests read them).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  document.addEventListener("change", (event) => {
    const all = event.target;
    if (all && all.id === "select-all") {
      document.querySelectorAll("#batch input[name=v]").forEach((b) => { b.checked = all.checked; });
    }
  });
  const live = document.getElementById("live");
  if (!live || !live.dataset.url) { return; }
  const seconds = Number(live.dataset.refresh) || 20;
  let last = null;

  const busy = () => {
    if (document.hidden) { return true; }
    if (Array.from(document.querySelectorAll("#batch input[type=checkbox]")).some((b) => b.checked)) {
      return true;
    }
    const active = document.activeElement;
    const typing = active && (["SELECT", "TEXTAREA"].includes(active.tagName) ||
      (active.tagName === "INPUT" && !["checkbox", "radio", "button", "submit"].includes(active.type)));
    if (typing) { return true; }
    const selection = window.getSelection();
    return Boolean(selection && selection.toString());
  };

  const swapBanner = (fresh) => {
    const old = document.querySelector(".critical-banner");
    if (old && fresh) { old.replaceWith(fresh); }
    else if (old) { old.remove(); }
    else if (fresh) {
      const header = document.querySelector("header.top");
      if (header) { header.after(fresh); }
    }
  };

  const tick = () => {
    if (busy()) {
      live.dataset.skipped = String(Number(live.dataset.skipped) + 1);
      return;
    }
    fetch(live.dataset.url, { credentials: "same-origin", cache: "no-store",
                              headers: { Accept: "text/html" } })
      .then((answer) => {
        if (answer.status === 401) { window.location.reload(); return null; }
        return answer.ok ? answer.text() : null;
      })
      .then((text) => {
        if (text === null || busy()) { return; }
        const doc = new DOMParser().parseFromString(text, "text/html");
        const rows = doc.getElementById("live-rows");
        if (rows && rows.innerHTML !== last) {
          last = rows.innerHTML;
          live.innerHTML = rows.innerHTML;
        }
        swapBanner(doc.querySelector(".critical-banner"));
        live.dataset.polls = String(Number(live.dataset.polls) + 1);
      })
      .catch(() => { /* the server is away: try again at the next tick */ });
  };
  setInterval(tick, seconds * 1000);
});
