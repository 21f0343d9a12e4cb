"""Fault-audit cases of issue #22 part A: outputs and data loss, signals and limits, exit codes,
Processing (``qgis_process``) and map sheets. ``scripts/fault_audit.py`` runs them with its own
(see :func:`cases`); each builds its inputs in its set-up.

Processing cases run ``scripts/qgis_process.sh`` on a profile with this checkout deployed (made
once per audit). The relay below passes on every line qgis_process prints on stderr but QGIS's
own start-up warnings (``setapi() is deprecated``, ``QStandardPaths``): an error must come out
once (as ``ERROR:\t<message>``), a success with no PROJ noise.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

from fault_audit import ENV, ROOT, USER_FILE, Case, _prev_run, _seq, _unmix

PROFILE_VAR = "URDM_AUDIT_QGIS_PROFILE"


# ----------------------------------------------------------------------------- helpers
def _profile(box: Path, sc) -> dict:
    """A QGIS profile with this checkout's plugin, made once per audit (its path in ENV)."""
    if ENV.get(PROFILE_VAR) and Path(ENV[PROFILE_VAR]).is_dir():
        return {}
    prof = Path(tempfile.mkdtemp(prefix="urdm-audit-qgis-"))
    atexit.register(shutil.rmtree, prof, True)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "package.py"), "deploy", str(prof / "profiles" / "default")],
                   check=True, capture_output=True)
    env = {k: v for k, v in ENV.items() if k != "QGIS_CUSTOM_CONFIG_PATH"}
    subprocess.run(["bash", str(ROOT / "scripts" / "qgis_process.sh"), "--profile", str(prof), "plugins", "enable",
                    "urdm_plugin"], check=True, capture_output=True, env=env)
    for mod in (sys.modules.get("__main__"), sys.modules.get("fault_audit")):  # the audit run as a script too
        if isinstance(getattr(mod, "ENV", None), dict):
            mod.ENV[PROFILE_VAR] = str(prof)
    return {}


#: Runs ``qgis_process run ARGS`` (see the module docstring); exit 3 when a success printed
#: PROJ noise ("proj_create: ...").
QGIS_PROCESS = f"""
import os, subprocess, sys
env = {{k: v for k, v in os.environ.items() if k != "QGIS_CUSTOM_CONFIG_PATH"}}
r = subprocess.run(["bash", {str(ROOT / "scripts" / "qgis_process.sh")!r}, "--profile", env[{PROFILE_VAR!r}],
                    "run", *sys.argv[1:]], capture_output=True, text=True, env=env, cwd=os.getcwd())
lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "setapi() is deprecated" not in ln
         and not ln.startswith("QStandardPaths")]
for ln in lines:
    print(ln, file=sys.stderr)
noise = sum("proj_create" in ln for ln in lines)
sys.exit(3 if r.returncode == 0 and noise else r.returncode)
"""


def _qp(category: str, name: str, argv: list, code: int = 1, **kw) -> Case:
    setup = kw.pop("setup", None)
    return Case(category, name, argv, code=code, python=QGIS_PROCESS,
                setup=_seq(_profile, setup) if setup else _profile, **kw)


def _vca_csv(name: str):
    """A CSV this tool wrote (vca) at ``name`` in the sandbox."""
    def setup(box: Path, sc) -> dict:
        subprocess.run([sys.executable, "-m", "urdm_plugin", "vca", str(sc.image), "3", str(box / name), "--quiet"],
                       env=ENV, check=True, capture_output=True)
        return {}
    return setup


def _edited_manifest(**edit):
    """A previous run whose run.json is edited afterwards (the user's file copied in)."""
    def setup(box: Path, sc) -> dict:
        _prev_run("prev")(box, sc)
        m = json.loads((box / "prev" / "run.json").read_text())
        if "extra" in edit:
            shutil.copy(box / USER_FILE, box / "prev" / edit["extra"])
            m["extra_files"]["notes"] = edit["extra"]
        (box / "prev" / "run.json").write_text(json.dumps(m))
        return {}
    return setup


def _swap_map(how: str):
    """A run whose second map is re-projected, or replaced by a 0-255 PNG, in run.json."""
    def setup(box: Path, sc) -> dict:
        from osgeo import gdal

        _prev_run("run")(box, sc)
        m = json.loads((box / "run" / "run.json").read_text())
        src = str(box / "run" / m["endmembers"][1]["file"])
        if how == "reprojected":
            gdal.Warp(str(box / "run" / "moved.tif"), src, dstSRS="EPSG:4326")
            m["endmembers"][1]["file"] = "moved.tif"
        else:
            gdal.Translate(str(box / "run" / "map.png"), src, format="PNG", outputType=gdal.GDT_Byte,
                           scaleParams=[[0, 1, 0, 255]])
            for f in (box / "run").glob("map.png.aux.xml"):
                f.unlink()
            m["endmembers"][1]["file"] = "map.png"
        (box / "run" / "run.json").write_text(json.dumps(m))
        return {}
    return setup


def _empty_setgid(box: Path, sc) -> dict:
    (box / "shared").mkdir()
    os.chmod(box / "shared", 0o2770)
    return {}


def _setgid_kept(box: Path) -> Optional[str]:
    mode = (box / "shared").stat().st_mode & 0o7777
    if mode != 0o2770:
        return f"the folder's mode became {oct(mode)} (was 0o2770)"
    return None if (box / "shared" / "run.json").is_file() else "no run.json in the folder"


def _py(code: str) -> str:
    return "import os, signal, subprocess, sys, time\n" + code


#: The CLI run in a current folder that is deleted before it starts (relative OUTDIR).
GONE_CWD = _py("""
d = os.path.join(sys.argv[1], "gone"); os.mkdir(d); os.chdir(d); os.rmdir(d)
sys.exit(subprocess.call([sys.executable, "-m", "urdm_plugin", "unmix", *sys.argv[2:4], "rel", "--quiet"]))
""")
#: The CLI run whose stdout reader has gone (| head -c 0).
CLOSED_STDOUT = _py("""
p = subprocess.Popen([sys.executable, "-m", "urdm_plugin", *sys.argv[1:]], stdout=subprocess.PIPE)
p.stdout.close()
sys.exit(p.wait())
""")
#: The CLI run with stdout in an encoding that lacks 'λ' (argv[1]: the encoding).
ENCODING = _py("""
env = dict(os.environ, PYTHONIOENCODING=sys.argv[1])
r = subprocess.run([sys.executable, "-m", "urdm_plugin", *sys.argv[2:]], env=env, capture_output=True)
sys.stderr.buffer.write(r.stderr)
sys.exit(r.returncode)
""")
#: SIGTERM 0.14 s after start, while modules load; the child's status as the shell reports it.
EARLY_TERM = _py("""
p = subprocess.Popen([sys.executable, "-m", "urdm_plugin", *sys.argv[1:]])
time.sleep(0.14)
p.send_signal(signal.SIGTERM)
rc = p.wait()
sys.exit(128 - rc if rc < 0 else rc)
""")
#: FCLS under an address-space limit of 400,000 KiB (ulimit -v 400000); killed after 120 s.
ADDRESS_LIMIT = _py("""
import resource
def cap():
    resource.setrlimit(resource.RLIMIT_AS, (400000 * 1024, 400000 * 1024))
p = subprocess.Popen([sys.executable, "-m", "urdm_plugin", *sys.argv[1:]], preexec_fn=cap)
try:
    sys.exit(p.wait(timeout=120))
except subprocess.TimeoutExpired:
    p.kill(); print("hung for 120 s under ulimit -v 400000", file=sys.stderr); sys.exit(1)
""")
#: The main process of a --workers 2 run SIGKILLed mid-run, once its workers are up: they must
#: be gone 3 s later. A run that ends before the kill proves nothing and fails the case.
#: The killed run's own temporary folder is removed here (a next run would remove it).
KILLED_POOL = _py("""
import glob, shutil
box = sys.argv[1]
p = subprocess.Popen([sys.executable, "-m", "urdm_plugin", *sys.argv[2:]])
def children():
    kids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == p.pid:
            kids.append(pid)
    return kids
t0 = time.time()
while not (glob.glob(os.path.join(box, ".out.tmp-*")) and children()) and time.time() - t0 < 60:
    if p.poll() is not None:
        break
    time.sleep(0.05)
if p.poll() is not None:
    print("the run ended before it could be killed: make it slower", file=sys.stderr); sys.exit(1)
time.sleep(0.5)
p.kill(); p.wait(); time.sleep(3.0)
alive = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
    except OSError:
        continue
    if "urdm_plugin" in cmd and box in cmd and int(pid) != os.getpid():
        alive.append(pid)
for pid in alive:
    os.kill(int(pid), signal.SIGKILL)
for d in glob.glob(os.path.join(box, ".out.tmp-*")):
    shutil.rmtree(d)
if alive:
    print(f"{len(alive)} worker(s) outlived the killed run", file=sys.stderr); sys.exit(1)
""")


# ----------------------------------------------------------------------------- cases
def cases() -> list:
    C = []
    ow = "--overwrite"
    # data loss: nothing written onto an input or onto a file this tool did not make
    C += [Case("outputs", "vca OUT is the input image (--overwrite)", ["vca", "{img}", "3", "{img}", ow], word="input"),
          Case("outputs", "vca OUT is the --identify library (--overwrite)",
               ["vca", "{img}", "3", "{box}/ref.csv", "--identify", "{box}/ref.csv", ow], setup=_vca_csv("ref.csv"),
               word="input"),
          Case("outputs", "vca OUT is a user's document (--overwrite)", ["vca", "{img}", "3", "{box}/" + USER_FILE, ow],
               word="not written by this tool"),
          Case("outputs", "vca replaces its own earlier CSV (--overwrite)", ["vca", "{img}", "2", "{box}/em.csv", ow,
                                                                             "--quiet"],
               code=0, setup=_vca_csv("em.csv"), changes=("em.csv",)),
          Case("outputs", "--overwrite into a run whose run.json names a user's file", _unmix(ow, out="{box}/prev"),
               setup=_edited_manifest(extra="notes.docx"), word="did not write"),
          Case("outputs", "--overwrite into a run holding this run's --mask", _unmix(
               ow, "--mask", "{box}/prev/residual_rmse.tif", out="{box}/prev"), setup=_prev_run("prev"),
               word="input"),
          Case("outputs", "an empty setgid 2770 OUTDIR is used in place", _unmix(out="{box}/shared"), code=0,
               out="shared", setup=_empty_setgid, check=_setgid_kept)]
    # exit codes
    long_out = "{box}/" + "/".join(["d" * 200] * 22)
    C += [Case("exit codes", "vca --max-pixels -5", ["vca", "{img}", "3", "{box}/em.csv", "--max-pixels", "-5"],
               word="at least 1"),
          Case("exit codes", "vca --max-pixels 0", ["vca", "{img}", "3", "{box}/em.csv", "--max-pixels", "0"],
               word="at least 1"),
          Case("exit codes", "OUTDIR path over 4 kB", _unmix(out=long_out), word="bytes long"),
          Case("exit codes", "a non-UTF-8 byte in OUTDIR", _unmix(out="{box}/out\udcff"), word="UTF-8"),
          Case("exit codes", "a non-UTF-8 byte in the image path", _unmix(img="{box}/sc\udcffene.tif"), word="UTF-8"),
          Case("exit codes", "relative OUTDIR in a deleted current folder", ["{box}", "{img}", "{lib}"], python=GONE_CWD,
               word="current folder"),
          Case("exit codes", "a committed run whose stdout reader is gone (| head -c 0)",
               ["unmix", "{img}", "{lib}", "{box}/out"], python=CLOSED_STDOUT, code=0, out="out"),
          Case("exit codes", "PYTHONIOENCODING=ascii and 'λ' in the summary",
               ["ascii", "unmix", "{img}", "{lib}", "{box}/out", "--method", "tv", "--lam", "0.01"], python=ENCODING,
               code=0, out="out"),
          Case("exit codes", "PYTHONIOENCODING=cp1252 and 'λ' in the summary",
               ["cp1252", "unmix", "{img}", "{lib}", "{box}/out", "--method", "tv", "--lam", "0.01"], python=ENCODING,
               code=0, out="out")]
    # signals and limits
    C += [Case("signals", "SIGTERM 0.14 s after start (modules loading)", _unmix(), python=EARLY_TERM, code=143,
               word="terminated"),
          Case("signals", "FCLS under ulimit -v 400000", _unmix("--method", "fcls"), python=ADDRESS_LIMIT, code=0,
               out="out"),
          Case("signals", "--workers 100000", _unmix("--workers", "100000"), word="at most"),
          Case("signals", "SIGKILL of a --workers 2 run: its pool dies too",
               ["{box}", *_unmix("--method", "urdm", "--quality", "fast", "--lam", "0.3", "--workers", "2",
                                 "--tile-size", "32", img="{box}/slow.tif")], python=KILLED_POOL, code=0)]
    # Processing (qgis_process) and map sheets
    img, lib = "INPUT={img}", "LIBRARY={lib}"
    C += [_qp("processing", "urdm:vca OUTPUT is the input image", ["urdm:vca", "--", img, "N=3", "OUTPUT={img}"],
              word="input"),
          _qp("processing", "urdm:vca OUTPUT is a user's document",
              ["urdm:vca", "--", img, "N=3", "OUTPUT={box}/" + USER_FILE], word="not written by this tool"),
          _qp("processing", "urdm:unmix TV with LAMBDA=abc", ["urdm:unmix", "--", img, lib, "METHOD=4", "LAMBDA=abc",
                                                              "OUTPUT_FOLDER={box}/out"], word="must be a number"),
          _qp("processing", "urdm:unmix TV with LAMBDA=0,3", ["urdm:unmix", "--", img, lib, "METHOD=4", "LAMBDA=0,3",
                                                              "OUTPUT_FOLDER={box}/out"], word="must be a number"),
          _qp("processing", "urdm:unmix FCLS with LAMBDA=abc", ["urdm:unmix", "--", img, lib, "METHOD=0",
                                                                "LAMBDA=abc", "OUTPUT_FOLDER={box}/out"],
              word="does not apply"),
          _qp("processing", "urdm:mapsheet OUTPUT_PNG is the input image",
              ["urdm:mapsheet", "--", "INPUT={box}/run", "OUTPUT_PDF={box}/m.pdf", "OUTPUT_PNG={img}"],
              setup=_prev_run("run"), word="not written by this tool"),
          _qp("processing", "urdm:mapsheet OUTPUT_PDF is the run's run.json",
              ["urdm:mapsheet", "--", "INPUT={box}/run", "OUTPUT_PDF={box}/run/run.json", "OUTPUT_PNG={box}/m.png"],
              setup=_prev_run("run"), word="input"),
          _qp("processing", "urdm:mapsheet of a run with one map re-projected",
              ["urdm:mapsheet", "--", "INPUT={box}/run", "OUTPUT_PDF={box}/m.pdf", "OUTPUT_PNG={box}/m.png"],
              setup=_swap_map("reprojected"), word="coordinate reference system"),
          _qp("processing", "urdm:mapsheet of a run naming a 0-255 PNG as a map",
              ["urdm:mapsheet", "--", "INPUT={box}/run", "OUTPUT_PDF={box}/m.pdf", "OUTPUT_PNG={box}/m.png"],
              setup=_swap_map("png"), word="float32"),
          _qp("processing", "urdm:mapsheet prints no PROJ noise",
              ["urdm:mapsheet", "--", "INPUT={box}/run", "OUTPUT_PDF={box}/sheet/m.pdf",
               "OUTPUT_PNG={box}/sheet/m.png"], code=0, out="sheet", setup=_prev_run("run"), changes=("run",)),
          _qp("processing", "urdm:unmix writes nothing beside its input (no scene.tif.aux.xml)",
              ["urdm:unmix", "--", img, lib, "METHOD=0", "OUTPUT_FOLDER={box}/out"], code=0, out="out")]
    return C

