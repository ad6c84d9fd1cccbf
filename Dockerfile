FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY tally ./tally
RUN pip install --no-cache-dir .
ENV TALLY_DATA_DIR=/data TALLY_HOST=0.0.0.0
VOLUME /data
EXPOSE 8000
CMD ["tally", "serve"]
