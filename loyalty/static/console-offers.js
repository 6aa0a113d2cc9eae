// While an offer is being sent, refresh its progress from the server every second and a
// half; stop once the fragment says the send is over. Without JavaScript the page shows
// the progress as it was when loaded.
(function () {
  var box = document.getElementById("progress");
  if (!box) return;
  var url = box.getAttribute("data-progress-url");
  function live() {
    var inner = box.querySelector("[data-live]");
    return inner && inner.getAttribute("data-live") === "true";
  }
  function poll() {
    if (!live()) return;
    fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null) box.innerHTML = html;
        if (live()) window.setTimeout(poll, 1500);
        else if (html !== null) {
          var status = box.querySelector("[data-status]");
          var shown = document.getElementById("offer-status");
          if (status && shown && shown.getAttribute("data-status") !== status.getAttribute("data-status")) {
            window.location.reload();
          }
        }
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 1500);
})();
