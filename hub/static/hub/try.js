// A composition's prompt box: post the prompt to the API, then poll the job every second
// and show its status, the generated text and the experts the router chose.
(function () {
  var form = document.getElementById("try-form");
  var live = document.getElementById("try-live");
  if (!form || !live) return;

  function show(job) {
    var status = document.getElementById("try-status") || live.appendChild(document.createElement("p"));
    status.id = "try-status";
    status.textContent = job.status + (job.message ? " · " + job.message : "") +
      (job.error ? " · " + job.error : "");
    if (job.result && typeof job.result.text === "string") {
      var out = document.getElementById("try-output") || live.appendChild(document.createElement("pre"));
      out.id = "try-output";
      out.textContent = "";
      var prompt = document.createElement("strong");
      prompt.textContent = job.request.prompt;
      out.appendChild(prompt);
      if (job.result.tokens) {  // per token: each coloured by the expert that made it
        job.result.tokens.forEach(function (t) {
          var span = document.createElement("span");
          span.className = "tok c" + (t[1] % 7);
          span.title = job.result.token_experts[t[1]];
          span.textContent = t[0];
          out.appendChild(span);
        });
        var legend = document.getElementById("try-legend") || live.appendChild(document.createElement("p"));
        legend.id = "try-legend";
        legend.className = "muted";
        legend.textContent = "Each token is coloured by the expert that made it (the top expert in most layers): ";
        job.result.token_experts.forEach(function (name, i) {
          var key = document.createElement("span");
          key.className = "tok c" + (i % 7);
          key.textContent = name;
          legend.appendChild(key);
          legend.appendChild(document.createTextNode(" "));
        });
      } else {
        out.appendChild(document.createTextNode(job.result.text));
      }
      var experts = document.getElementById("try-experts") || live.appendChild(document.createElement("p"));
      experts.id = "try-experts";
      experts.className = "muted";
      experts.textContent = "Routed to " + job.result.experts.map(function (e) {
        return e[0] + " (" + Number(e[1]).toFixed(2) + ")";
      }).join(", ") + "; " + Number(job.result.seconds).toFixed(1) + " s.";
    }
  }

  function poll(url) {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (job) {
        show(job);
        if (job.status === "queued" || job.status === "running") setTimeout(function () { poll(url); }, 1000);
        else document.getElementById("try-button").disabled = false;
      })
      .catch(function () { setTimeout(function () { poll(url); }, 3000); });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var data = new FormData(form);
    var body = { prompt: data.get("prompt"), max_new_tokens: Number(data.get("max_new_tokens")),
                 do_sample: data.get("do_sample") === "on", temperature: Number(data.get("temperature")) };
    document.getElementById("try-button").disabled = true;
    var old = document.getElementById("try-output");
    if (old) old.remove();
    fetch(form.getAttribute("data-endpoint"), {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": data.get("csrfmiddlewaretoken") },
      body: JSON.stringify(body),
    })
      .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, body: j }; }); })
      .then(function (answer) {
        if (!answer.ok) {
          show({ status: "refused", message: answer.body.detail || JSON.stringify(answer.body) });
          document.getElementById("try-button").disabled = false;
          return;
        }
        poll("/api/jobs/" + answer.body.id + "/");
      });
  });

  var url = live.getAttribute("data-url");
  if (url) poll(url);
})();
