// The 3D structure viewer of a material page (3Dmol.js, served from /static/vendor).
(function () {
  var element = document.getElementById("viewer");
  var cif = document.getElementById("structure-cif");
  if (!element || !cif || typeof $3Dmol === "undefined") { return; }
  var viewer = $3Dmol.createViewer(element, { backgroundColor: "white" });
  var model = viewer.addModel(JSON.parse(cif.textContent), "cif");
  viewer.setStyle({}, { sphere: { scale: 0.3, colorscheme: "Jmol" }, stick: { radius: 0.12, colorscheme: "Jmol" } });
  viewer.addUnitCell(model, { box: { color: "#555" } });
  viewer.zoomTo();
  viewer.render();
  element.dataset.ready = "true";
})();
