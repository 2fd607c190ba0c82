// Mixture page: while any listed expert is still being validated, refresh the
// experts table every 4 s from the same page.
(function () {
  var table = document.getElementById("experts");
  if (!table) return;
  function pending() {
    return table.querySelector(".status.uploaded, .status.validating") !== null;
  }
  function tick() {
    if (!pending()) return;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("experts");
        if (fresh) { table.innerHTML = fresh.innerHTML; }
        setTimeout(tick, 4000);
      })
      .catch(function () { setTimeout(tick, 8000); });
  }
  setTimeout(tick, 4000);
})();
