// Composition page: while a publication is queued or running, poll the composition
// every 2 s and reload the page once it is published or has failed.
(function () {
  var box = document.getElementById("publish-live");
  if (!box) return;
  var url = box.getAttribute("data-url");
  function tick() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (data.hub_status !== "queued") {
          window.location.reload();
          return;
        }
        setTimeout(tick, 2000);
      })
      .catch(function () { setTimeout(tick, 5000); });
  }
  setTimeout(tick, 2000);
})();
