"""Development server: `python app.py` serves on http://localhost:5000 (use gunicorn in production)."""
from fracture_web import create_app

app = create_app()

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=5000)
