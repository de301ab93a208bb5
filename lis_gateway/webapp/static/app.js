// The worklist's small helpers: "select all routine samples", and a refresh every
// minute while nothing is selected and no field is being edited.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const all = document.getElementById("select-all");
  const boxes = () => Array.from(document.querySelectorAll("#batch input[name=v]"));
  if (all) {
    all.addEventListener("change", () => boxes().forEach((b) => { b.checked = all.checked; }));
  }
  if (document.getElementById("batch") || document.querySelector("form.filters")) {
    setInterval(() => {
      const busy = boxes().some((b) => b.checked) ||
        (document.activeElement && ["INPUT", "SELECT"].includes(document.activeElement.tagName));
      if (!busy) { window.location.reload(); }
    }, 60000);
  }
});
