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

echo "== 1/4 demo scene"
$PY scripts/make_demo_scene.py "$OUT"

echo "== 2/4 plugin into a temporary QGIS profile ($PROFILE)"
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
echo "== 3/4 qgis_process run urdm:unmix (METHOD=$METHOD_INDEX: $METHOD_ID) -> $RUN"
bash scripts/qgis_process.sh --profile "$(pwd)/$PROFILE" run urdm:unmix -- \
    INPUT="$(pwd)/$OUT/demo_scene.tif" LIBRARY="$(pwd)/$OUT/demo_library.csv" \
    METHOD="$METHOD_INDEX" OUTPUT_FOLDER="$(pwd)/$RUN"

echo "== 4/4 quicklook"
PNG="$OUT/demo_quicklook.png"
$PY scripts/make_demo_scene.py --quicklook "$RUN" "$OUT/demo_truth.tif" "$PNG" >/dev/null

cat <<MSG

Demo finished.
  scene:      $OUT/demo_scene.tif (120x120 px, 150 bands, EPSG:32633)
  library:    $OUT/demo_library.csv
  truth:      $OUT/demo_truth.tif
  results:    $RUN/ (one GeoTIFF per endmember, residual_rmse.tif, dominant.tif, run.json)
  quicklook:  $PNG
Open the results in QGIS with:  make qgis  (then Layer > Add Raster Layer)
MSG
