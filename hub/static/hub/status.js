// Live status of an expert page: polls its status every 2 s until it is final.
(function () {
  var box = document.getElementById("live-status");
  if (!box) return;
  var url = box.getAttribute("data-url");
  var badge = document.getElementById(box.getAttribute("data-badge") || "expert-status");
  var bar = document.getElementById("job-progress");
  var message = document.getElementById("job-message");
  function tick() {
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        badge.textContent = data.status;
        badge.className = "status " + data.status;
        if (data.job) {
          bar.hidden = false;
          bar.value = data.job.progress;
          message.textContent = data.job.action + ": " + data.job.status +
            (data.job.message ? " · " + data.job.message : "") +
            (data.job.error ? " · " + data.job.error : "");
        }
        if (data.final) {
          if (box.getAttribute("data-final") !== "true") window.location.reload();
          return;
        }
        setTimeout(tick, 2000);
      })
      .catch(function () { setTimeout(tick, 5000); });
  }
  if (box.getAttribute("data-final") !== "true") setTimeout(tick, 2000);
})();
