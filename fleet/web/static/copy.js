// Copy buttons: <button data-copy="FIELD-ID" data-copy-status="STATUS-ID" hidden>.
// They stay hidden without JavaScript; the field itself is still selectable.
"use strict";

function copyFallback(field) {
  field.select();
  return document.execCommand("copy");
}

async function copyField(button) {
  const field = document.getElementById(button.dataset.copy);
  const status = document.getElementById(button.dataset.copyStatus);
  if (!field) return;
  let copied = false;
  try {
    await navigator.clipboard.writeText(field.value);
    copied = true;
  } catch (_) {
    copied = copyFallback(field);
  }
  field.select();
  if (status) {
    status.textContent = copied ? "Copied to the clipboard." : "Could not copy: select the field and copy it yourself.";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", () => copyField(button));
  }
});
