"""Running the notebooks, apart from the science: `pipeline` (papermill, resumable steps, the
`./run_all.sh` command line), `progress` (what a running notebook prints) and `lab` (JupyterLab
with the project's kernel). Nothing in the science modules imports these."""
