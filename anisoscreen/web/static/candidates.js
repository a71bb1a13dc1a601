// The candidates filter form: leave empty fields out of the URL, so the server sees only
// what was filled in. (A file, not an inline script: the pages' CSP allows only /static.)
(function () {
  var form = document.getElementById("filters");
  if (!form) { return; }
  form.addEventListener("submit", function () {
    this.querySelectorAll("input").forEach(function (input) {
      if (input.value === "" || (input.type === "checkbox" && !input.checked)) { input.disabled = true; }
    });
  });
})();
