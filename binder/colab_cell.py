# Colab: install dlink and its pinned packages (once per runtime). Elsewhere this cell does
# nothing: run ./run_all.sh or scripts/bootstrap.sh and use the .venv kernel.
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    REPO = "https://github.com/OWNER/dlink"  # the repository this notebook came from
    HOME = "/content/dlink"
    if not os.path.isdir(HOME):
        subprocess.run(["git", "clone", "--depth", "1", REPO, HOME], check=True)
    if not os.path.exists(f"{HOME}/.colab-installed"):
        apt = "openjdk-17-jre-headless ufoai-sound sound-theme-freedesktop wordwarvi-sound"
        subprocess.run(
            f"apt-get -qq update && apt-get -qq install -y --no-install-recommends {apt}",
            shell=True,
            check=True,
        )
        # keep Colab's CUDA build of torch; everything else at the pinned versions
        subprocess.run(
            f"grep -v '^torch==' {HOME}/requirements.txt > /tmp/dlink-req.txt", shell=True, check=True
        )
        pip = [sys.executable, "-m", "pip", "install", "-q"]
        subprocess.run(pip + ["-r", "/tmp/dlink-req.txt"], check=True)
        subprocess.run(pip + ["--no-deps", "-r", f"{HOME}/requirements-nodeps.txt"], check=True)
        subprocess.run(pip + ["--no-deps", "-e", HOME], check=True)
        open(f"{HOME}/.colab-installed", "w").close()
        # numpy/pandas changed under the running interpreter: restart it (Colab reconnects)
        print("dlink installed; the session restarts now: run all cells again")
        os.kill(os.getpid(), 9)
    sys.path.insert(0, HOME)  # the editable install is only seen by a fresh interpreter
    os.chdir(f"{HOME}/notebooks")
