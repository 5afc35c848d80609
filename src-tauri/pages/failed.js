// Fills the failure page from its query string (?code=…&message=…&hint=…), written by the
// desktop shell. Text only: nothing from the query is ever parsed as HTML.
const query = new URLSearchParams(window.location.search);
for (const field of ["code", "message", "hint"]) {
  const value = query.get(field);
  if (value) document.getElementById(field).textContent = value;
}
