from skdcgn.cli import app

app(prog_name="skdcgn")
