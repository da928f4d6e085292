// fibosms console: the one script. "Select all" on the dead letters.
document.addEventListener("DOMContentLoaded", function () {
  var all = document.getElementById("all");
  if (!all) { return; }
  all.addEventListener("change", function () {
    document.querySelectorAll('input[name="message_id"]').forEach(function (box) {
      box.checked = all.checked;
    });
  });
});
