// Upload with a progress bar; without JavaScript the form posts as usual.
(function () {
  var form = document.getElementById("upload-form");
  if (!form || !window.XMLHttpRequest || !window.FormData) return;
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var bar = document.getElementById("upload-progress");
    var status = document.getElementById("upload-status");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    bar.hidden = false;
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        bar.value = Math.round((100 * e.loaded) / e.total);
        status.textContent = "Uploading… " + bar.value + " %";
      }
    });
    xhr.addEventListener("load", function () {
      if (xhr.responseURL && xhr.responseURL.indexOf(form.action) === -1) {
        window.location = xhr.responseURL;  // redirected to the new expert's page
      } else {
        document.open();
        document.write(xhr.responseText);  // the form again, with its errors
        document.close();
      }
    });
    xhr.addEventListener("error", function () {
      status.textContent = "The upload failed: the connection was lost. Try again.";
    });
    status.textContent = "Uploading…";
    xhr.send(new FormData(form));
  });
})();
