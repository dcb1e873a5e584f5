// The monitor's only script: asks before a destructive action. Everything works
// without it (forms post as they are).
document.addEventListener("submit", function (e) {
  var button = e.submitter || e.target.querySelector("button[data-confirm]");
  var question = button && button.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    e.preventDefault();
  }
});
