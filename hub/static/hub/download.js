// Waiting for a download: polls the export every 2 s and reloads once it is ready,
// which starts the download; a failed export shows its message.
(function () {
  var box = document.getElementById("download-live");
  if (!box) return;
  var url = box.getAttribute("data-url");
  var bar = document.getElementById("export-progress");
  var message = document.getElementById("export-message");
  function tick() {
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (data.ready) {
          window.location.reload();
          return;
        }
        if (data.job) {
          bar.value = data.job.progress;
          message.textContent = data.job.status + (data.job.message ? " · " + data.job.message : "");
          if (data.job.status === "failed") return;
        }
        setTimeout(tick, 2000);
      })
      .catch(function () { setTimeout(tick, 5000); });
  }
  setTimeout(tick, 2000);
})();
