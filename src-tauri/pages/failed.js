// Fills the failure page from its query string (?code=…&message=…&hint=…&key=…&file=…&reset=1
// &restore=1), written by the desktop shell. Text only: nothing from the query is ever parsed as
// HTML. The two buttons are plain links the shell catches (window.rs: way_back); S and R press
// them from the keyboard, and the gentler one (restore) has the focus, so Enter takes it.
const query = new URLSearchParams(window.location.search);
for (const field of ["code", "message", "hint", "key", "file"]) {
  const value = query.get(field);
  if (value) document.getElementById(field).textContent = value;
}
if (query.get("key") && query.get("file")) document.getElementById("where").hidden = false;
const offers = { defaults: query.get("reset") === "1", "last-good": query.get("restore") === "1" };
for (const [id, offered] of Object.entries(offers)) {
  document.getElementById(id).hidden = !offered;
}
if (offers.defaults || offers["last-good"]) {
  document.getElementById("ways").hidden = false;
  document.getElementById("kept").hidden = false;
}
const offered = Object.keys(offers).filter((id) => offers[id]);
const gentlest = offered.includes("last-good") ? "last-good" : offered[0];
if (gentlest) document.getElementById(gentlest).focus();
const shortcuts = { s: "defaults", r: "last-good" };
let chosen = false; // a held or repeated key takes one way, once
document.addEventListener("keydown", (event) => {
  if (chosen || event.ctrlKey || event.altKey || event.metaKey) return;
  const id = shortcuts[event.key.toLowerCase()];
  if (!id || !offers[id]) return;
  chosen = true;
  document.getElementById(id).click();
});
