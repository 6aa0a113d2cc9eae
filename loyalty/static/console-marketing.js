// The segment builder's live count: when a field changes, wait until typing pauses, post the
// form to its count fragment and put the answer in place. Nothing is saved by counting.
(function () {
  "use strict";
  var form = document.getElementById("segment-form");
  if (!form) return;
  var target = document.getElementById("live-count");
  var url = form.getAttribute("data-count-url");
  var timer = null;
  var latest = 0;

  function count() {
    var asked = ++latest;
    var body = new URLSearchParams(new FormData(form));
    var token = form.querySelector("input[name=_csrf_token]");
    target.setAttribute("aria-busy", "true");
    fetch(url, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      // The fragment, not the whole page the Count button (without JavaScript) gets.
      headers: token
        ? { "X-CSRFToken": token.value, "X-Requested-With": "fetch" }
        : { "X-Requested-With": "fetch" },
    })
      .then(function (response) { return response.text(); })
      .then(function (html) {
        // An older answer arriving late never replaces a newer one.
        if (asked !== latest) return;
        target.innerHTML = html;
        target.removeAttribute("aria-busy");
      })
      .catch(function () { target.removeAttribute("aria-busy"); });
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(count, 350);
  }

  form.addEventListener("input", later);
  form.addEventListener("change", later);
})();
