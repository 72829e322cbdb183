"""`wirestack ftp`: ftplib connects to a port where nothing listens."""

from . import Scenario

SCENARIO = Scenario(
    name="ftp",
    lesson="ftplib to a closed port: the same refusal as smtplib's, under ftplib's own frames",
    default_host="127.0.0.1",
    default_port=None,
    peer="closed",
    template="import ftplib\nftp = ftplib.FTP(timeout={timeout!r})\nftp.connect({host!r}, {port!r})\n",
)
