# DEMO ONLY: the compose trial's SMTP relay (relay.py), built by `docker compose up --build` from deploy/mail/.
FROM python:3.12-slim
RUN pip install --no-cache-dir aiosmtpd==1.4.6 \
    && useradd --system --uid 10025 --no-create-home --shell /usr/sbin/nologin relay
COPY relay.py /usr/local/bin/relay.py
USER 10025
EXPOSE 2525
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s \
    CMD ["python3", "-c", "import smtplib; smtplib.SMTP('127.0.0.1', 2525, timeout=4).quit()"]
CMD ["python3", "/usr/local/bin/relay.py"]
