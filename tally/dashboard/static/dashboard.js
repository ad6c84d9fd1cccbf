// Draws the figures that pages embed as JSON data blocks, and makes the filter bar apply itself.
"use strict";

function drawFigures() {
  for (const holder of document.querySelectorAll("[data-figure]")) {
    const spec = JSON.parse(document.getElementById(holder.dataset.figure).textContent);
    window.Plotly.newPlot(holder, spec.data, spec.layout, {
      responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"],
    });
  }
}

function wireFilters() {
  const form = document.querySelector("form.filters");
  if (!form) return;
  const range = form.querySelector("[data-range]");
  const custom = form.querySelector("[data-custom]");
  range.addEventListener("change", () => {
    custom.hidden = range.value !== "custom";
    if (range.value !== "custom") form.requestSubmit();
  });
  for (const select of form.querySelectorAll("[data-autosubmit]")) {
    select.addEventListener("change", () => form.requestSubmit());
  }
  // Empty fields would clutter the shareable URL with `app=&model=`: leave them out.
  form.addEventListener("formdata", (event) => {
    for (const [name, value] of [...event.formData.entries()]) {
      if (value === "" || (name !== "range" && custom.hidden && (name === "from" || name === "to"))) {
        event.formData.delete(name);
      }
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  wireFilters();
  if (document.querySelector("[data-figure]")) drawFigures();
});
