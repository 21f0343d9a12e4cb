#!/usr/bin/env bash
# make demo: write the georeferenced demo scene, deploy the plugin into a throwaway QGIS
# profile, unmix the scene headless with qgis_process (the default method: urdm when torch
# and the prior are available, else fcls) and write a quicklook PNG.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=demo_output
PROFILE="$OUT/qgis-profile"
mkdir -p "$OUT"

echo "== 1/5 demo scene"
$PY scripts/make_demo_scene.py "$OUT"

echo "== 2/5 plugin into a temporary QGIS profile ($PROFILE)"
rm -rf "$PROFILE"
$PY scripts/package.py deploy "$PROFILE/profiles/default" >/dev/null
bash scripts/qgis_process.sh --profile "$(pwd)/$PROFILE" plugins enable urdm_plugin >/dev/null

read -r METHOD_ID METHOD_INDEX < <($PY - <<'PYEOF'
from urdm_plugin.core.methods.registry import default_method, method_index
m = default_method()
print(m, method_index(m))
PYEOF
)
RUN="$OUT/run_${METHOD_ID}_$(date +%Y%m%d-%H%M%S)"
echo "== 3/5 qgis_process run urdm:unmix (METHOD=$METHOD_INDEX: $METHOD_ID) -> $RUN"
bash scripts/qgis_process.sh --profile "$(pwd)/$PROFILE" run urdm:unmix -- \
    INPUT="$(pwd)/$OUT/demo_scene.tif" LIBRARY="$(pwd)/$OUT/demo_library.csv" \
    METHOD="$METHOD_INDEX" OUTPUT_FOLDER="$(pwd)/$RUN"

echo "== 4/5 quicklook"
PNG="$OUT/demo_quicklook.png"
$PY scripts/make_demo_scene.py --quicklook "$RUN" "$OUT/demo_truth.tif" "$PNG" >/dev/null

# Worked example: a sensor product as delivered -> how many materials (HySime) and which
# (named after the library) -> URDM with those endmembers -> a map sheet.
echo "== 5/5 worked example: EMIT product -> vca auto -> named endmembers -> URDM -> map sheet"
PRODUCT=$($PY scripts/make_demo_product.py "$OUT")
$PY -m urdm_plugin vca "$PRODUCT" auto "$OUT/emit_endmembers.csv" --identify "$OUT/demo_library.csv" --overwrite
EMIT_RUN="$OUT/emit_run_$(date +%Y%m%d-%H%M%S)"
$PY -m urdm_plugin unmix "$PRODUCT" "$OUT/emit_endmembers.csv" "$EMIT_RUN" --method "$METHOD_ID" --quiet
bash scripts/qgis_process.sh --profile "$(pwd)/$PROFILE" run urdm:mapsheet -- \
    INPUT="$(pwd)/$EMIT_RUN/run.json" OUTPUT_PDF="$(pwd)/$OUT/emit_map_sheet.pdf" \
    OUTPUT_PNG="$(pwd)/$OUT/emit_map_sheet.png" >/dev/null

cat <<MSG

Demo finished.
  scene:      $OUT/demo_scene.tif (120x120 px, 150 bands, EPSG:32633)
  library:    $OUT/demo_library.csv
  truth:      $OUT/demo_truth.tif
  results:    $RUN/ (one GeoTIFF per endmember, residual_rmse.tif, dominant.tif, run.json)
  quicklook:  $PNG
  worked example (sensor product): $PRODUCT
    endmembers found and named: $OUT/emit_endmembers.csv (+ .report.txt)
    $METHOD_ID run: $EMIT_RUN/   map sheet: $OUT/emit_map_sheet.png (.pdf)
Open the results in QGIS with:  make qgis  (then Layer > Add Raster Layer)
MSG
