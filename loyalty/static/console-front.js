// The registration form's live feedback: the duplicate check while a phone or email is typed
// (debounced; the server answers with the existing-customer panel as HTML), and only the
// sections of the chosen kind of customer. Without this script the form still works: the
// check runs when it is sent, and both kinds' sections show.
(function () {
  "use strict";
  var form = document.querySelector("form.register");
  if (!form) return;
  var area = document.getElementById("existing");
  var phone = document.getElementById("phone");
  var email = document.getElementById("email");
  var timer = null;
  var asked = "";

  function check() {
    var query = "phone=" + encodeURIComponent(phone.value.trim()) +
      "&email=" + encodeURIComponent(email.value.trim());
    if (query === asked) return;
    asked = query;
    fetch(form.dataset.check + "?" + query, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        // Only the latest question's answer counts.
        if (html !== null && query === asked) area.innerHTML = html;
      })
      .catch(function () { /* offline: the check runs again when the form is sent */ });
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(check, 350);
  }

  phone.addEventListener("input", later);
  email.addEventListener("input", later);

  function showKind() {
    var chosen = form.querySelector("input[name=kind]:checked");
    var kind = chosen ? chosen.value : "person";
    form.querySelectorAll("fieldset[data-kind]").forEach(function (set) {
      set.hidden = set.dataset.kind !== kind;
      set.disabled = set.dataset.kind !== kind;
    });
  }
  form.querySelectorAll("input[name=kind]").forEach(function (radio) {
    radio.addEventListener("change", showKind);
  });
  showKind();
})();
